"""A report uses the runs of one sweep (its members) made from the report's config; on MLflow stores built by hand.

No training and no Ray: each test writes a sqlite MLflow store with MlflowClient as the
sweep would leave it (parent run tags, member and fingerprint tags on the child runs),
then builds the real ``cifar-resnet-fashion-mnist`` report from the real tune space.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, Sequence

import pytest

import pipelines.report.definitions  # noqa: F401
from pipelines.report.engine import build_report, summary
from raysys.cli.main import main as cli
from raysys.track import identity
from raysys.tune.space import load_space
from raysys.tune.sweep import trial_configs

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "tune_spaces" / "cifar-resnet-fashion-mnist.yaml"
REPORT = "cifar-resnet-fashion-mnist"
EXPERIMENT = "cifar-resnet"
ISSUE_OVERRIDES = ["seeds=[0,1]", "train.epochs=1", "data.limit=500"]  # the sweep of issue 15, defect 1


class Store:
    """A sqlite MLflow store in a test's folder, written as sweeps and ``raysys train`` write it."""

    def __init__(self, root: Path):
        from mlflow.tracking import MlflowClient

        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.client = MlflowClient(self.uri)
        self.exp_id = self.client.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())

    def configs(self, overrides: Sequence[str] = ()) -> Dict[tuple, object]:
        """(row label, seed) -> the trial's Config, as the sweep computes it."""
        space = load_space(SPACE, overrides)
        return {(t.label, t.seed): cfg for t, cfg in zip(space.trials(), trial_configs(space, EXPERIMENT))}

    def parent(self, overrides: Sequence[str] = (), last_started: str = "", old: bool = False) -> str:
        tags = {"raysys.sweep": "cifar-resnet-fashion-mnist"}
        if not old:
            tags.update({identity.SWEEP_KEY_TAG: identity.sweep_key("cifar-resnet-fashion-mnist", overrides),
                         identity.SWEEP_OVERRIDES_TAG: json.dumps(list(overrides)),
                         identity.SWEEP_LAST_STARTED_TAG: last_started})
        run = self.client.create_run(self.exp_id, run_name="cifar-resnet-fashion-mnist", tags=tags)
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    def run(self, run_name: str, accuracy: float, *, cfg=None, parent: str = "", member: str = "trained",
            fingerprint: str = "", epochs: int = 1, status: str = "FINISHED") -> str:
        """A training run; ``cfg`` records its fingerprint (else none: recorded before fingerprints)."""
        from mlflow.entities import Metric

        tags = {"raysys.run_name": run_name}
        if parent:
            tags["mlflow.parentRunId"] = parent
            if member:
                tags[identity.member_tag(parent)] = member
        if fingerprint or cfg is not None:
            tags[identity.FINGERPRINT_TAG] = fingerprint or identity.fingerprint(cfg)
        run = self.client.create_run(self.exp_id, run_name=run_name, tags=tags)
        metrics = [Metric("test_acc", accuracy * (epoch + 1) / epochs, 0, epoch) for epoch in range(epochs)]
        self.client.log_batch(run.info.run_id, metrics=metrics)
        self.client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    def sweep(self, overrides: Sequence[str], last_started: str, accuracy: float) -> tuple:
        """A finished sweep: its parent and one member run per trial, at ``accuracy`` (+ seed/100)."""
        parent = self.parent(overrides, last_started)
        ids = {}
        for (label, seed), cfg in self.configs(overrides).items():
            ids[label, seed] = self.run(cfg.run_name, accuracy + seed / 100, cfg=cfg, parent=parent)
        return parent, ids


def used(report) -> Dict[tuple, str]:
    return {(row.label, r.seed): r.run_id for row in report.rows for r in row.runs if r.run_id}


def table(out: Path) -> Dict[str, dict]:
    with open(out / REPORT / "table.csv", newline="") as handle:
        return {row["row"]: row for row in csv.DictReader(handle)}


def demo_run(store: Store) -> str:
    """`make demo`: `raysys train cifar-resnet/fashion-mnist-resnet20` (3 epochs, no sweep), the newest run."""
    from raysys.config.loader import load_config

    cfg = load_config("cifar-resnet/fashion-mnist-resnet20")
    assert cfg.run_name == "fashion-mnist-resnet20-seed0" and cfg.train.epochs == 3
    return store.run(cfg.run_name, 0.99, cfg=cfg, epochs=3)


def test_report_uses_the_sweeps_runs_not_a_same_named_demo_run(tmp_path, capsys):
    """Issue 15, defect 1: after `sweep ... seeds=[0,1] train.epochs=1 data.limit=500` the demo run is not 'seed 0'."""
    store = Store(tmp_path)
    parent, ids = store.sweep(ISSUE_OVERRIDES, "2025-01-02T10:00:00.000000Z", 0.5)
    demo = demo_run(store)
    # A same-named run that is not the sweep's (a train of the same config, outside the sweep): never mixed in.
    intruder = store.run(store.configs(ISSUE_OVERRIDES)["ResNet-20", 0].run_name, 0.01,
                         cfg=store.configs(ISSUE_OVERRIDES)["ResNet-20", 0])

    assert cli(["report", REPORT, "--out", str(tmp_path / "out"), f"tracking.uri={store.uri}"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    result = json.loads(printed[-1])
    assert result["parent_run_id"] == parent
    assert result["sweep"]["run_id"] == parent and result["sweep"]["key"] == identity.sweep_key(REPORT, ISSUE_OVERRIDES)
    assert result["sweep"]["last_started"] == "2025-01-02T10:00:00.000000Z"
    assert result["sweep"]["overrides"] == ISSUE_OVERRIDES and result["membership"] == "recorded"
    assert result["missing"] == {} and result["stale"] == [] and result["unverified"] == []
    rows = {r["row"]: r for r in result["rows"]}
    assert rows["ResNet-20"]["n"] == 2 and rows["ResNet-20"]["mean"] == pytest.approx(50.5)  # seeds 0, 1 of the sweep
    assert rows["ResNet-32"]["mean"] == pytest.approx(50.5)
    assert any(line.startswith(f"runs: sweep run {parent} (key ") for line in printed)

    report = build_report(REPORT, tmp_path / "again", tracking_uri=store.uri, log_to_mlflow=False)
    assert used(report) == ids and demo not in used(report).values() and intruder not in used(report).values()
    assert report.space.seeds == [0, 1]  # the sweep's own overrides
    header = (tmp_path / "again" / REPORT / "table.md").read_text()
    assert f"sweep run {parent}" in header and "2025-01-02T10:00:00.000000Z" in header
    assert identity.sweep_key(REPORT, ISSUE_OVERRIDES) in header
    assert "report/table.md" in {a.path for a in store.client.list_artifacts(parent, "report")}  # the CLI's build


def test_sweep_run_picks_another_sweep_and_the_default_is_the_last_started(tmp_path):
    store = Store(tmp_path)
    # B is created first but re-run last: the default follows raysys.sweep_last_started, not the start time.
    later, later_ids = store.sweep(["seeds=[0]", "train.epochs=2"], "2025-03-01T00:00:00.000000Z", 0.7)
    earlier, earlier_ids = store.sweep(ISSUE_OVERRIDES, "2025-02-01T00:00:00.000000Z", 0.5)

    default = build_report(REPORT, tmp_path / "a", tracking_uri=store.uri, log_to_mlflow=False)
    assert default.parent_run_id == later and used(default) == later_ids and default.space.seeds == [0]

    chosen = build_report(REPORT, tmp_path / "b", tracking_uri=store.uri, sweep_run=earlier, log_to_mlflow=False)
    assert chosen.parent_run_id == earlier and used(chosen) == earlier_ids
    assert float(table(tmp_path / "b")["ResNet-20"]["mean"]) == pytest.approx(50.5)


def test_report_overrides_only_narrow_the_sweeps_trials(tmp_path):
    store = Store(tmp_path)
    parent, ids = store.sweep(ISSUE_OVERRIDES, "2025-01-02T10:00:00.000000Z", 0.5)
    demo_run(store)

    narrow = build_report(REPORT, tmp_path / "a", space_overrides=["seeds=[0]"], tracking_uri=store.uri, log_to_mlflow=False)
    assert used(narrow) == {k: v for k, v in ids.items() if k[1] == 0} and narrow.missing == {}
    assert table(tmp_path / "a")["ResNet-20"]["n"] == "1"

    # Overrides naming other trials (the demo's 3 epochs, seed 2) find nothing of the sweep: all missing, no demo run.
    other = build_report(REPORT, tmp_path / "b", space_overrides=["train.epochs=3", "data.limit=0", "seeds=[0,2]"],
                         tracking_uri=store.uri, log_to_mlflow=False)
    assert used(other) == {} and other.missing == {"ResNet-20": [0, 2], "ResNet-32": [0, 2]}


def test_a_stale_member_is_listed_and_never_averaged(tmp_path, capsys):
    store = Store(tmp_path)
    parent = store.parent(ISSUE_OVERRIDES, "2025-01-02T10:00:00.000000Z")
    configs = store.configs(ISSUE_OVERRIDES)
    for (label, seed), cfg in configs.items():
        fingerprint = "0123456789abcdef" if (label, seed) == ("ResNet-32", 1) else ""  # trained before a preset changed
        store.run(cfg.run_name, 0.5, cfg=cfg, parent=parent, fingerprint=fingerprint, member="adopted")
    stale_id = [r for r in store.client.search_runs([store.exp_id])
                if r.data.tags.get(identity.FINGERPRINT_TAG) == "0123456789abcdef"][0].info.run_id

    assert cli(["report", REPORT, "--out", str(tmp_path / "out"), f"tracking.uri={store.uri}"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert f"stale: ResNet-32: seed 1: run {stale_id}" in printed
    assert "missing: ResNet-32: seeds [1]" in printed
    result = json.loads(printed[-1])
    assert result["stale"] == [{"row": "ResNet-32", "seed": 1, "run_id": stale_id, "run_name": configs["ResNet-32", 1].run_name,
                                "replaced_by": ""}]
    assert {r["row"]: r["n"] for r in result["rows"]} == {"ResNet-20": 2, "ResNet-32": 1}
    assert "Stale" in (tmp_path / "out" / REPORT / "table.md").read_text()


def test_an_old_store_is_matched_by_name_and_said_to_be_unverified(tmp_path, capsys):
    """Runs and a parent recorded before membership and fingerprints: read as before, flagged unverified."""
    store = Store(tmp_path)
    parent = store.parent(old=True)
    ids = {key: store.run(cfg.run_name, 0.6, parent=parent, member="")  # no member tag, no fingerprint
           for key, cfg in store.configs().items()}

    assert cli(["report", REPORT, "--out", str(tmp_path / "out"), f"tracking.uri={store.uri}"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    result = json.loads(printed[-1])
    assert result["parent_run_id"] == parent and result["missing"] == {}
    assert result["membership"] == "unverified (recorded before sweep membership)"
    assert {(u["row"], u["seed"]): u["run_id"] for u in result["unverified"]} == ids
    assert any("recorded before sweep membership" in line for line in printed if line.startswith("runs: "))
    assert any(line.startswith("unverified: 6 runs") for line in printed)
    assert "recorded before sweep membership" in (tmp_path / "out" / REPORT / "table.md").read_text()


def test_no_sweep_run_at_all_matches_by_name_and_says_so(tmp_path):
    store = Store(tmp_path)
    demo = demo_run(store)
    report = build_report(REPORT, tmp_path / "out", tracking_uri=store.uri, log_to_mlflow=False)
    assert report.parent_run_id == "" and report.sweep.membership.startswith("unverified (no sweep run")
    # Same name as the space's ResNet-20 seed 0, but 2 workers where the space says 1: another config.
    assert used(report) == {} and [s["run_id"] for s in report.stale] == [demo]
    old_demo = store.run("fashion-mnist-resnet20-seed0", 0.8)  # recorded before fingerprints: matched by name
    report = build_report(REPORT, tmp_path / "out", tracking_uri=store.uri, log_to_mlflow=False)
    assert used(report) == {("ResNet-20", 0): old_demo} and report.unverified[0]["run_id"] == old_demo
    assert summary(report, tmp_path / "out")["membership"].startswith("unverified")


def test_a_sweep_run_that_is_not_one_of_the_space_is_refused_in_one_line(tmp_path, capsys):
    store = Store(tmp_path)
    parent, _ = store.sweep(ISSUE_OVERRIDES, "2025-01-02T10:00:00.000000Z", 0.5)
    child = store.run("something", 0.1)
    capsys.readouterr()  # MLflow's database set-up lines
    for bad in ("nope", child):
        assert cli(["report", REPORT, "--out", str(tmp_path / "out"), f"tracking.uri={store.uri}", "--sweep-run", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --sweep-run {bad} is not a sweep run of space "
                                                   "'cifar-resnet-fashion-mnist'")
        assert parent in err[0]  # the candidates
    assert not (tmp_path / "out").exists()


def test_expected_fingerprints_equal_loading_every_trial(tmp_path):
    """The STIR report's fast fingerprints (one Config per row) are those of each trial's own Config."""
    import yaml

    from pipelines.report.membership import expected_fingerprints

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({
        "name": "same", "seeds": [1, 7],
        "presets": [{"preset": "stir/emoji", "label": "px", "overrides": ["model.name=stir_pixel_pool"]},
                    {"preset": "cifar-resnet/fashion-mnist-resnet20", "label": "r20"}],
    }))
    space = load_space(path)
    slow = {cfg.run_name: identity.fingerprint(cfg) for cfg in trial_configs(space, "stir")}
    expected = expected_fingerprints(space, "stir")
    assert {name: expected[name] for name in slow} == slow and len(slow) == 4
    # the px row's runs were named by the preset before names said the row: the same fingerprints
    assert {n for n in expected if n not in slow} == {"emoji-seed1-79659b41", "emoji-seed7-79659b41"}
    assert expected["emoji-seed1-79659b41"] == slow["px-seed1-79659b41"]


def test_stir_report_uses_only_the_sweeps_members_and_leaves_out_stale_ones(tmp_path):
    """The STIR report's records: the chosen stir-emoji sweep's members (and the lr-selection sweep's), not stale."""
    import yaml
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    path = tmp_path / "stir-emoji.yaml"  # the real space's first model and scenario 2, seeds 1-3
    path.write_text(yaml.safe_dump({
        "name": "stir-emoji", "report": "stir-emoji", "seeds": "1-3",
        "presets": [{"preset": "stir/emoji", "label": "standard", "overrides": ["model.name=stir_standard"]}],
        "grid": {"stir.evaluation": [2], "train.lr": [0.01, 0.001]},
    }))
    space = load_space(path)
    configs = {(c.train.lr, c.seed): c for c in trial_configs(space, "stir")}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment("stir", artifact_location=(tmp_path / "artifacts").as_uri())

    def parent(name: str) -> str:
        run = client.create_run(exp_id, run_name=name, tags={
            "raysys.sweep": name, identity.SWEEP_KEY_TAG: name, identity.SWEEP_OVERRIDES_TAG: "[]",
            identity.SWEEP_LAST_STARTED_TAG: "2025-01-01T00:00:00.000000Z"})
        return run.info.run_id

    def record(seed: int, lr: float, acc: float, sweeps: Sequence[str], fingerprint: str = "") -> str:
        cfg = configs[lr, seed]
        tags = {"raysys.run_name": cfg.run_name, identity.FINGERPRINT_TAG: fingerprint or identity.fingerprint(cfg),
                **{identity.member_tag(p): "trained" for p in sweeps}}
        run = client.create_run(exp_id, run_name=cfg.run_name, tags=tags)
        params = {"model": "standard", "data": "emoji", "evaluation": 2, "kernel_size": 7, "interpolation": "bicubic",
                  "lr": lr, "seed": seed}
        client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()],
                         metrics=[Metric("test_acc", acc, 0, 0), Metric("best_acc", acc, 0, 0)])
        client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    full, selection = parent("stir-emoji"), parent("stir-lr-selection-emoji")
    members = [record(seed, 0.01, 50.0, [full]) for seed in (1, 2)]
    record(1, 0.001, 40.0, [selection])  # the other lr's seeds 1-5 come from the lr-selection sweep
    outsider = record(3, 0.01, 99.0, [])  # neither sweep trained or adopted it
    stale = record(3, 0.01, 10.0, [full], fingerprint="0123456789abcdef")  # another config under this name
    report = build_report("stir-emoji", tmp_path / "out", space_path=path, tracking_uri=uri, log_to_mlflow=False)
    assert report.parent_run_id == full and report.sweep.enforced
    assert set(used(report).values()) == set(members)
    assert [s["run_id"] for s in report.stale] == [stale] and outsider not in used(report).values()
    with open(tmp_path / "out" / "stir-emoji" / "lr_selection.csv", newline="") as handle:
        assert {r["lr"] for r in csv.DictReader(handle)} == {"0.01", "0.001"}
