"""FlexConv's sections moved under ``flexconv``: old names still load (with a note) and old runs still match.

The original's groups ``net``, ``kernel``, ``conv``, ``mask`` are ``flexconv.net``, ... now
(raysys/config/renames.py, declared in raysys/families/flexconv/config.py). No Ray: MLflow
stores are sqlite files written by hand, as ``raysys train`` and ``raysys sweep`` leave them.
"""
from __future__ import annotations

import copy
import json

import pytest
from omegaconf import OmegaConf

import pipelines.report.definitions  # noqa: F401  (registers the reports)
from pipelines.report.engine import REPORTS, build_report
from raysys.config import loader, renames
from raysys.config.loader import load_config
from raysys.driver import record as rec
from raysys.track import identity, runs
from raysys.tune.space import load_space
from raysys.tune.sweep import trial_configs

PRESET = "flexconv/cifar10-flexnet7"


def old_names(tree):
    """A resolved config as raysys recorded it before the rename: net/kernel/conv/mask at the top, no finetune_from."""
    old = copy.deepcopy(tree)
    old.update(old.pop("flexconv"))
    old["cross_res"].pop("finetune_from")
    for added in renames.ADDED:  # keys other families added since, at their old behaviour
        section, _, key = added.key.rpartition(".")
        if added.key != "cross_res.finetune_from" and old.get(section, {}).get(key, None) == added.legacy:
            del old[section][key]
    for moved in renames.MOVED:  # shared fields that moved into a family since, at their default
        section, _, key = moved.key.rpartition(".")
        old.get(section, {}).setdefault(key, moved.value)
    return old


def old_fingerprint(cfg) -> str:
    """What a run of ``cfg`` recorded before the rename (the digest itself did not change)."""
    return str(identity.fingerprint(old_names(OmegaConf.to_container(cfg, resolve=True))))


def test_an_old_name_on_the_command_line_is_read_with_a_note(capsys):
    cfg = load_config(PRESET, ["net.no_hidden=32", "kernel.regularize_params.factor=0.2"])
    assert cfg.flexconv.net.no_hidden == 32 and cfg.flexconv.kernel.regularize_params.factor == 0.2
    assert "net" not in cfg and "kernel" not in cfg
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: config key 'net.no_hidden' in override 'net.no_hidden=32' is now 'flexconv.net.no_hidden'; use the new name",
        "note: config key 'kernel.regularize_params.factor' in override 'kernel.regularize_params.factor=0.2' is now "
        "'flexconv.kernel.regularize_params.factor'; use the new name",
    ]
    # The run name is the one the old name gave (its hash is over the old key names).
    assert cfg.run_name == load_config(PRESET, ["flexconv.net.no_hidden=32", "flexconv.kernel.regularize_params.factor=0.2"]).run_name
    assert load_config(PRESET, ["net.no_hidden=32"]).run_name == "cifar10-flexnet7-seed0-0663fe41"  # as before the rename


def test_a_user_preset_with_the_old_names_loads_with_a_note(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.yaml").write_text(
        "extends: flexconv/cifar10-flexnet7\nnet:\n  no_hidden: 16\nconv:\n  horizon: '17'\nmask:\n  init_value: 0.1\n")
    folders = loader.paper_folders()
    monkeypatch.setattr(loader, "paper_folders", lambda: {**folders, "user": tmp_path})
    cfg = load_config("user/mine")
    assert (cfg.flexconv.net.no_hidden, cfg.flexconv.conv.horizon, cfg.flexconv.mask.init_value) == (16, "17", 0.1)
    assert cfg.flexconv.net.no_blocks == 7  # the rest from the shipped preset
    err = capsys.readouterr().err
    for old in ("net", "conv", "mask"):
        assert f"note: config key {old!r} in preset 'user/mine' is now 'flexconv.{old}'" in err


def test_an_old_name_not_in_the_schema_is_refused_under_its_new_name():
    with pytest.raises(Exception, match="flexconv.net.no_such_key"):
        load_config(PRESET, ["net.no_such_key=1"])


def test_upgrade_and_legacy_trees_are_inverse():
    new = renames.upgrade_tree({"net": {"no_hidden": 3}, "flexconv": {"kernel": {"type": "SIREN"}}, "train": {"lr": 1}}, None)
    assert new == {"flexconv": {"net": {"no_hidden": 3}, "kernel": {"type": "SIREN"}}, "train": {"lr": 1}}
    # legacy_tree also drops keys added since, when they keep the old behaviour or do not matter
    tree = {**new, "cross_res": {"source_res": 0, "target_res": 0, "finetune_from": "best"}}
    assert renames.legacy_tree(tree) == {"net": {"no_hidden": 3}, "kernel": {"type": "SIREN"}, "train": {"lr": 1},
                                         "cross_res": {"source_res": 0, "target_res": 0}}
    crossres = {**new, "cross_res": {"source_res": 16, "target_res": 32, "finetune_from": "best"}}
    assert renames.legacy_tree(crossres) is None  # no run before finetune_from fine-tuned from the best epoch
    crossres["cross_res"]["finetune_from"] = "last"
    assert renames.legacy_tree(crossres)["cross_res"] == {"source_res": 16, "target_res": 32}
    assert renames.current_key("mask.use") == "flexconv.mask.use" and renames.legacy_key("flexconv.mask.use") == "mask.use"
    assert renames.current_key("train.lr") == "train.lr" and renames.current_key("network.x") == "network.x"


@pytest.mark.parametrize("preset, overrides", [
    (PRESET, []),
    (PRESET, ["flexconv.kernel.omega_0=10.0"]),
    ("flexconv/crossres-cifar10-flexnet7", ["cross_res.finetune_from=last", "train.augment=resnet"]),
])
def test_a_run_recorded_under_the_old_names_is_the_same_run(preset, overrides):
    cfg = load_config(preset, overrides)
    fp = identity.fingerprint(cfg)
    old = SimpleRun(old_fingerprint(cfg))
    assert identity.match(old, fp) == identity.SAME
    changed = identity.fingerprint(load_config(preset, [*overrides, "flexconv.net.no_hidden=8"]))
    assert identity.match(old, changed) == identity.STALE


def test_an_old_crossres_run_that_fine_tuned_from_the_last_epoch_is_stale_under_the_new_default():
    cfg = load_config("flexconv/crossres-cifar10-flexnet7", ["train.augment=resnet"])
    legacy = load_config("flexconv/crossres-cifar10-flexnet7", ["train.augment=resnet", "cross_res.finetune_from=last"])
    assert identity.match(SimpleRun(old_fingerprint(legacy)), identity.fingerprint(cfg)) == identity.STALE


class SimpleRun:
    def __init__(self, fingerprint: str):
        self.data = type("Data", (), {"tags": {identity.FINGERPRINT_TAG: fingerprint}})()


def log_old_run(client, exp_id, cfg, accuracy, parent=""):
    """A FINISHED run as raysys recorded it before the rename: fingerprint and params under the old names."""
    from mlflow.entities import Metric, Param

    tags = {runs.RUN_NAME_TAG: cfg.run_name, identity.FINGERPRINT_TAG: old_fingerprint(cfg)}
    if parent:
        tags.update({"mlflow.parentRunId": parent, identity.member_tag(parent): "trained"})
    run = client.create_run(exp_id, run_name=cfg.run_name, tags=tags)
    flat = loader.flatten(old_names(OmegaConf.to_container(cfg, resolve=True)))
    params = [Param(k, str(v)) for k, v in sorted(flat.items()) if k.startswith(("net.", "kernel.", "conv.", "mask."))]
    assert any(p.key == "net.no_hidden" for p in params)
    client.log_batch(run.info.run_id, metrics=[Metric("test_acc", accuracy, 0, 1)], params=params[:100])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_the_idempotency_check_finds_an_old_named_finished_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp_id = runs.experiment_id(uri, "flexconv")
    cfg = load_config(PRESET, [f"tracking.uri={uri}", "net.no_hidden=12"])
    old = log_old_run(runs.client(uri), exp_id, cfg, 0.9)
    found = rec.lookup(uri, exp_id, cfg)
    assert found.finished and found.run.info.run_id == old and found.verdict == identity.SAME and not found.stale


def test_a_report_uses_runs_recorded_under_the_old_names(tmp_path):
    from mlflow.tracking import MlflowClient

    report = "flexconv-table8-mnist"
    space = load_space(REPORTS.get(report).space_path())
    experiment = space.experiment_name()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment(experiment, artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(exp_id, run_name=space.name, tags={
        "raysys.sweep": space.name, identity.SWEEP_KEY_TAG: identity.sweep_key(space.name, []),
        identity.SWEEP_OVERRIDES_TAG: json.dumps([]), identity.SWEEP_LAST_STARTED_TAG: "2026-01-01T00:00:00.000000Z"})
    client.set_terminated(parent.info.run_id, "FINISHED")
    ids = {}
    for trial, cfg in zip(space.trials(), trial_configs(space, experiment)):
        ids[trial.seed] = log_old_run(client, exp_id, cfg, 0.99 + trial.seed / 1000, parent=parent.info.run_id)

    built = build_report(report, tmp_path / "out", tracking_uri=uri, log_to_mlflow=False)
    (row,) = built.rows
    assert {r.seed: r.run_id for r in row.runs} == ids and not row.missing_seeds
    assert {r.identity for r in row.runs} == {identity.SAME} and built.stale == []
    assert row.mean == pytest.approx(99.1)
