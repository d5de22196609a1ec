"""Packed sweeps (``seeds_per_trial``): a row's seeds one after another in one Tune trial, each its own MLflow run.

Real Ray Tune + Ray Train, MLflow on sqlite, Fashion-MNIST shards. One pack is stopped
in its second seed (a failure injected in the worker); the sweep then trains what is left:
the finished seed is skipped, the stopped one resumes from its own checkpoint.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import pytest

from raysys.config import load_config
from raysys.errors import ConfigError, TrainingError
from raysys.track import metric_names
from raysys.train import checkpoint as ckpt
from raysys.train.run_folder import RUN_NAME_KEY, checkpoint_folders
from raysys.tune.pack import packs
from raysys.tune.space import Trial, load_space
from tests.test_sweep import TINY, mlflow_client, write_space

SEEDS = [0, 1, 2]
# Timings are the only metrics two runs of one config may not repeat exactly.
TIMINGS = {metric_names.grouped(k) for k in ("epoch_time", "images_per_sec")}
# Params that say where a run ran (its store and checkpoint folder), not what it computed.
LOCATIONS = ("tracking.", "checkpoint.storage_path")


def pack_space(folder: Path, shards: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_space(folder / "space.yaml", shards, folder, name="pack-sweep", grid={}, seeds=SEEDS, **fields)


# -- the space field, the packs, the table (no Ray) ---------------------------------------------


def test_seeds_per_trial_is_a_space_field_and_a_command_line_field(tmp_path):
    path = pack_space(tmp_path, tmp_path / "shards")
    assert load_space(path).seeds_per_trial == 1
    assert load_space(path, ["seeds_per_trial=2"]).seeds_per_trial == 2
    assert load_space(pack_space(tmp_path, tmp_path / "shards", seeds_per_trial=3)).seeds_per_trial == 3


@pytest.mark.parametrize("value", [0, -1, "x", 1.5, True])
def test_a_bad_seeds_per_trial_is_refused_in_one_line(tmp_path, value):
    with pytest.raises(ConfigError) as info:
        load_space(pack_space(tmp_path, tmp_path / "shards", seeds_per_trial=value))
    message = str(info.value)
    assert message.startswith(f"space field 'seeds_per_trial': {value!r} (must be an integer >= 1") and "\n" not in message


def test_packs_cut_each_rows_seeds_in_order():
    def item(label: str, seed: int):
        return Trial(label, "p", (), seed), SimpleNamespace(run_name=f"{label}-seed{seed}"), None

    pending = [item("a", s) for s in range(5)] + [item("b", 0), item("b", 1)]
    assert [[f"{t.label}{t.seed}" for t, _, _ in p] for p in packs(pending, 2)] == [["a0", "a1"], ["a2", "a3"], ["a4"], ["b0", "b1"]]
    assert [len(p) for p in packs(pending, 8)] == [5, 2]


@pytest.mark.parametrize("override, message", [
    ("checkpoint.storage_path=s3://bucket/runs", "is a URI"),
    ("tracking.enabled=false", "needs tracking.enabled=true"),
    ("evaluate.after_training=[accuracy]", "evaluate.after_training is not run inside a pack"),
])
def test_what_a_pack_cannot_train_is_refused_before_ray(override, message):
    from raysys.driver.launch import check_packable

    with pytest.raises(ConfigError) as info:
        check_packable([load_config(TINY, [override])])
    assert message in str(info.value) and "seeds_per_trial" in str(info.value)


def test_the_table_follows_a_pack_from_seed_to_seed():
    from raysys.console.sweep_table import SweepTable, TableRow
    from raysys.tune.table import tune_callback

    table = SweepTable([TableRow(f"a-seed{s}", "a", s, epochs=2) for s in (0, 1)], live=False, stream=io.StringIO())
    callback = tune_callback(table)
    trial = SimpleNamespace(config={"trial": {"name": "a-seed0", "names": ["a-seed0", "a-seed1"]}},
                            last_result={"test_acc": 0.4}, get_error=lambda: None)
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"epoch": 2, "test_acc": 0.3, RUN_NAME_KEY: "a-seed0"})
    assert table.rows["a-seed0"].state == "running" and table.rows["a-seed1"].state == "queued"
    callback.on_trial_result(0, [], trial, {"epoch": 1, "test_acc": 0.2, RUN_NAME_KEY: "a-seed1"})
    assert (table.rows["a-seed0"].state, table.rows["a-seed0"].value) == ("finished", 0.3)
    assert (table.rows["a-seed1"].state, table.rows["a-seed1"].epoch) == ("running", 1)
    callback.on_trial_complete(0, [], trial)
    assert (table.rows["a-seed1"].state, table.rows["a-seed1"].value) == ("finished", 0.4)


# -- a pack stopped in its second seed, then the sweep (real Ray) -------------------------------------


def failing_in(run_name: str, epoch: int, marker: Optional[Path] = None):
    """A pack's worker entry that fails in ``run_name`` when it reports ``epoch``, before that epoch's checkpoint;
    with ``marker``, only once (the worker group Ray Train restarts trains on)."""

    def entry(loop_config):  # nested: cloudpickle sends it by value to the worker
        from raysys.train import run_folder
        from raysys.train.pack import train_pack_per_worker

        original = run_folder.RunFolderSession.report

        def report(self, metrics, checkpoint=None):
            if self.run_name == run_name and metrics.get("epoch") == epoch and not (marker and marker.exists()):
                if marker:
                    marker.write_text("failed once")
                raise RuntimeError(f"injected failure in {run_name} at epoch {epoch}")
            original(self, metrics, checkpoint)

        run_folder.RunFolderSession.report = report
        try:
            train_pack_per_worker(loop_config)
        finally:
            run_folder.RunFolderSession.report = original

    return entry


OVERRIDES = ["train.epochs=2", "failure.max_failures=0", "seeds_per_trial=2"]


@pytest.fixture(scope="module")
def packed(fashion_shards, ray_cluster, tmp_path_factory):
    """Seeds 0 and 1 packed, stopped in seed 1's epoch 2; then the packed sweep of seeds 0-2 (seeds_per_trial=2)."""
    from raysys.driver import pack
    from raysys.driver.record import lookup
    from raysys.tune.sweep import run_sweep, trial_configs

    workdir = tmp_path_factory.mktemp("pack")
    space = load_space(pack_space(workdir, fashion_shards), OVERRIDES)
    configs = trial_configs(space, space.experiment_name())
    entry = pack._pack_worker_entry
    pack._pack_worker_entry = failing_in(configs[1].run_name, 2)
    try:
        with pytest.raises(TrainingError) as stopped:
            pack.run_pack(configs[:2])
    finally:
        pack._pack_worker_entry = entry
    client = mlflow_client(workdir)
    exp_id = client.get_experiment_by_name(space.experiment_name()).experiment_id
    before = [lookup(c.tracking.uri, exp_id, c).run for c in configs]
    stopped_steps = [m.step for m in client.get_metric_history(before[1].info.run_id, "train/loss")]
    summary = run_sweep(space, overrides=OVERRIDES)
    yield SimpleNamespace(workdir=workdir, space=space, configs=configs, stopped=stopped.value, before=before,
                          stopped_steps=stopped_steps, summary=summary, client=client, exp_id=exp_id)


def test_a_stopped_pack_leaves_its_first_seed_finished_and_the_second_resumable(packed):
    first, second, third = packed.before
    assert "injected failure" in str(packed.stopped) and packed.configs[1].run_name in str(packed.stopped)
    assert first.info.status == "FINISHED" and second.info.status == "FAILED" and third is None
    assert "injected failure" in second.data.tags["raysys.failure_reason"]
    assert packed.stopped_steps == [1]  # its first epoch, checkpointed and logged before the failure


def test_the_sweep_trains_the_rest_in_one_trial_each_seed_its_own_finished_run(packed):
    summary, client = packed.summary, packed.client
    assert (summary.started, summary.skipped, summary.failed) == (2, 1, [])
    assert [(o.trial.seed, o.status) for o in summary.outcomes] == [(0, "finished earlier"), (1, "finished"), (2, "finished")]
    assert [o.run_name for o in summary.outcomes] == [c.run_name for c in packed.configs]
    # one Tune trial for the pack of seeds 1 and 2
    trial_dirs = list((packed.workdir / "runs" / "sweep-pack-sweep").glob("*/params.json"))
    assert len(trial_dirs) == 1
    assert json.loads(trial_dirs[0].read_text())["trial"]["names"] == [c.run_name for c in packed.configs[1:]]
    parent = summary.parent_run_id
    children = {c.data.params["seed"]: c for c in client.search_runs([packed.exp_id], "attributes.status = 'FINISHED'")
                if c.data.tags.get("raysys.run_name") in {cfg.run_name for cfg in packed.configs}}
    assert sorted(children) == ["0", "1", "2"]
    for seed, child in children.items():
        assert child.data.tags["raysys.row"] == "fashion-mnist-resnet20"
        assert child.data.tags[f"raysys.member.{parent}"] == ("adopted" if seed == "0" else "trained")
        assert [m.step for m in sorted(client.get_metric_history(child.info.run_id, "train/loss"), key=lambda m: m.step)] == [1, 2]
        assert {"train/loss", "test/acc", "test/count", "train/lr"} <= set(child.data.metrics)
        assert "checkpoint/state.pt" in {a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")}
    # the stopped seed is the same run, resumed: its first epoch is the one the first attempt logged
    resumed = children["1"]
    assert resumed.info.run_id == packed.before[1].info.run_id
    assert [a["status"] for a in json.loads(resumed.data.tags["raysys.attempts"])] == ["FAILED"]
    folder = Path(resumed.data.tags["raysys.checkpoint_dir"])
    final = ckpt.load_file(checkpoint_folders(folder)[-1])
    logged = client.get_metric_history(resumed.info.run_id, metric_names.grouped("epoch_time"))
    assert final["epoch"] == 2 and final["history"][0]["epoch_time"] == [m.value for m in logged if m.step == 1][0]


def test_each_packed_seed_keeps_its_checkpoints_where_its_run_says(packed, tmp_path):
    from raysys.driver.checkpoints import run_checkpoint

    for cfg in packed.configs[1:]:
        found = run_checkpoint(cfg, cfg.run_name, str(tmp_path))
        run = packed.client.get_run(packed.summary.outcomes[cfg.seed].run_id)
        assert Path(run.data.tags["raysys.checkpoint_dir"]) in found.parents
        assert ckpt.load_file(found)["config"]["seed"] == cfg.seed
        assert len(checkpoint_folders(found.parent.parent)) <= cfg.checkpoint.num_to_keep


def test_running_the_packed_sweep_again_trains_nothing(packed):
    from raysys.tune.sweep import run_sweep

    again = run_sweep(packed.space, overrides=OVERRIDES)
    assert (again.started, again.skipped) == (0, 3) and again.parent_run_id == packed.summary.parent_run_id


@pytest.mark.slow
def test_a_packed_seed_is_the_run_an_unpacked_sweep_gives(packed, fashion_shards, tmp_path):
    """Seed 2 (trained fresh in the pack) against the same trial of an unpacked sweep in another store."""
    from raysys.tune.sweep import run_sweep

    overrides = ["train.epochs=2", "failure.max_failures=0", "seeds=[2]"]
    alone = run_sweep(load_space(pack_space(tmp_path, fashion_shards), overrides), overrides=overrides)
    [outcome] = alone.outcomes
    assert outcome.status == "finished" and outcome.run_name == packed.configs[2].run_name
    ours = packed.client.get_run(packed.summary.outcomes[2].run_id)
    theirs = mlflow_client(tmp_path).get_run(outcome.run_id)

    def science(params):
        return {k: v for k, v in params.items() if not k.startswith(LOCATIONS)}

    assert science(ours.data.params) == science(theirs.data.params)
    assert ours.data.tags["raysys.config_fingerprint"] == theirs.data.tags["raysys.config_fingerprint"]
    assert set(ours.data.metrics) == set(theirs.data.metrics)
    for key in set(ours.data.metrics) - TIMINGS:
        assert ours.data.metrics[key] == pytest.approx(theirs.data.metrics[key], rel=1e-6), key


@pytest.mark.slow
def test_a_restarted_worker_group_passes_through_the_ended_seeds(fashion_shards, ray_cluster, tmp_path, monkeypatch):
    """Ray Train restarts the pack's workers (failure.max_failures=1): seed 0 only repeats its end, seed 1 trains."""
    from raysys.driver import pack
    from raysys.tune.sweep import trial_configs

    space = load_space(pack_space(tmp_path, fashion_shards), ["train.epochs=1", "failure.max_failures=1", "seeds=[0, 1]"])
    configs = trial_configs(space, space.experiment_name())
    marker = tmp_path / "failed-once"
    monkeypatch.setattr(pack, "_pack_worker_entry", failing_in(configs[1].run_name, 1, marker))
    summaries = pack.run_pack(configs)
    assert marker.exists() and [s["status"] for s in summaries] == ["finished", "finished"]
    client = mlflow_client(tmp_path)
    for summary in summaries:
        run = client.get_run(summary["run_id"])
        assert run.info.status == "FINISHED" and "raysys.attempts" not in run.data.tags
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1]
        assert Path(summary["checkpoint"]).parent == Path(run.data.tags["raysys.checkpoint_dir"])
