"""The MLflow record of a run: identity, attempts, heartbeat, closing, repair (no Ray: a real sqlite store)."""
from __future__ import annotations

import json
import signal
import time

import pytest
from mlflow.tracking import MlflowClient

from raysys.config import load_config
from raysys.driver import record as rec
from raysys.driver.repair import repair
from raysys.errors import TrainingError
from raysys.track import identity, runs
from raysys.train import checkpoint as ckpt

PRESET = "cifar-resnet/fashion-mnist-resnet20"


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, runs.experiment_id(uri, "cifar-resnet")


def config(uri, *overrides):
    return load_config(PRESET, [f"tracking.uri={uri}", *overrides])


def opened(cfg, exp_id, **kwargs):
    found = rec.lookup(cfg.tracking.uri, exp_id, cfg)
    return rec.RunRecord.open(cfg, exp_id, found, kind="train", tags={}, label="test run", **kwargs)


def test_a_resumed_run_logs_the_params_its_first_attempt_never_logged(store):
    uri, exp_id = store
    cfg = config(uri)
    first = opened(cfg, exp_id)
    first.close("FAILED", "died before params")  # the first attempt logged nothing
    second = opened(cfg, exp_id)
    assert second.run_id == first.run_id and second.resumed
    second.log_config(cfg)
    second.close("FINISHED")
    run = MlflowClient(uri).get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "cifar_resnet20" and len(run.data.params) > 20
    assert runs.has_artifact(uri, first.run_id, "config.yaml")


def test_a_finished_run_carries_no_failure_reason_and_keeps_its_attempts(store):
    uri, exp_id = store
    cfg = config(uri)
    first = opened(cfg, exp_id)
    first.close("FAILED", "CUDA out of memory")
    second = opened(cfg, exp_id)
    second.close("FINISHED")
    tags = MlflowClient(uri).get_run(first.run_id).data.tags
    assert runs.FAILURE_TAG not in tags
    attempts = json.loads(tags[rec.ATTEMPTS_TAG])
    assert [(a["status"], a["reason"]) for a in attempts] == [("FAILED", "CUDA out of memory")]


def test_a_changed_config_is_another_run_and_the_old_one_is_stale(store):
    uri, exp_id = store
    old = opened(config(uri), exp_id)
    old.close("FINISHED")
    changed = config(uri)
    changed.train.amp = not changed.train.amp  # a preset default changed; the run name did not
    assert changed.run_name == config(uri).run_name
    found = rec.lookup(uri, exp_id, changed)
    assert found.run is None and [r.info.run_id for r in found.stale] == [old.run_id]
    new = opened(changed, exp_id)
    assert new.run_id != old.run_id
    tags = MlflowClient(uri).get_run(new.run_id).data.tags
    assert tags[identity.TRAIN_NAME_TAG] != MlflowClient(uri).get_run(old.run_id).data.tags[identity.TRAIN_NAME_TAG]


def test_a_run_recorded_before_fingerprints_is_matched_by_name_as_unverified(store):
    uri, exp_id = store
    cfg = config(uri)
    legacy = MlflowClient(uri).create_run(exp_id, run_name=cfg.run_name, tags={runs.RUN_NAME_TAG: cfg.run_name})
    MlflowClient(uri).set_terminated(legacy.info.run_id, "FINISHED")
    found = rec.lookup(uri, exp_id, cfg)
    assert found.finished and found.verdict == identity.UNVERIFIED


def test_rerun_of_a_finished_run_makes_a_new_run_and_supersedes_the_old(store):
    uri, exp_id = store
    cfg = config(uri)
    old = opened(cfg, exp_id)
    old.close("FINISHED")
    new = opened(cfg, exp_id, rerun=True)
    assert new.run_id != old.run_id
    client = MlflowClient(uri)
    assert client.get_run(old.run_id).data.tags[identity.SUPERSEDED_TAG] == new.run_id
    assert client.get_run(new.run_id).data.tags[identity.TRAIN_NAME_TAG] != client.get_run(old.run_id).data.tags[identity.TRAIN_NAME_TAG]
    assert rec.lookup(uri, exp_id, cfg).run.info.run_id == new.run_id


def test_a_run_with_a_live_heartbeat_is_not_taken_over(store):
    uri, exp_id = store
    cfg = config(uri)
    live = opened(cfg, exp_id)
    with pytest.raises(TrainingError, match="RUNNING in another live process"):
        opened(cfg, exp_id)
    live.close("KILLED", "test over")


def test_a_dead_run_is_resumed_by_the_next_command_and_its_death_recorded(store):
    uri, exp_id = store
    cfg = config(uri)
    dead = opened(cfg, exp_id)
    dead._stop_heartbeat()  # the process "died": no more beats, run left RUNNING
    old = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() - rec.STALE_AFTER_S - 60))
    runs.set_tags(uri, dead.run_id, {rec.HEARTBEAT_TAG: old})
    again = opened(cfg, exp_id)
    assert again.run_id == dead.run_id
    attempts = json.loads(MlflowClient(uri).get_run(dead.run_id).data.tags[rec.ATTEMPTS_TAG])
    assert attempts[-1]["status"] == "FAILED" and "died without closing" in attempts[-1]["reason"]
    again.close("FINISHED")


def test_a_run_whose_driver_here_has_exited_is_dead_at_once(store):
    import subprocess
    import sys

    uri, exp_id = store
    cfg = config(uri)
    gone = opened(cfg, exp_id)
    gone._stop_heartbeat()
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    runs.set_tags(uri, gone.run_id, {rec.DRIVER_TAG: f"{socket.gethostname()}:{exited.stdout.strip()}"})
    assert rec.is_dead(MlflowClient(uri).get_run(gone.run_id))  # heartbeat fresh, process gone: SIGKILL'd here
    again = opened(cfg, exp_id)
    assert again.run_id == gone.run_id
    again.close("FINISHED")


def test_guard_closes_the_run_killed_on_sigterm_and_failed_on_an_error(store):
    uri, exp_id = store
    cfg = config(uri)
    record = opened(cfg, exp_id)
    with pytest.raises(rec.Terminated):
        with record.guard():
            signal.raise_signal(signal.SIGTERM)
    run = MlflowClient(uri).get_run(record.run_id)
    assert run.info.status == "KILLED" and run.data.tags[runs.FAILURE_TAG] == "terminated (SIGTERM)"

    record = opened(cfg, exp_id)
    with pytest.raises(TrainingError, match="test run failed: ValueError: boom"):
        with record.guard():
            raise ValueError("boom")
    run = MlflowClient(uri).get_run(record.run_id)
    assert run.info.status == "FAILED" and run.data.tags[runs.FAILURE_TAG] == "ValueError: boom"


def test_repair_closes_dead_runs_restores_params_and_leaves_live_ones(store, tmp_path):
    uri, exp_id = store
    client = MlflowClient(uri)
    cfg = config(uri, f"checkpoint.storage_path={tmp_path / 'runs'}")
    # an old-store run: RUNNING, no params, no heartbeat, started long ago; its checkpoint on disk
    dead = client.create_run(exp_id, run_name=cfg.run_name, tags={runs.RUN_NAME_TAG: cfg.run_name},
                             start_time=int((time.time() - 3600) * 1000))
    folder = tmp_path / "runs" / cfg.run_name / "checkpoint_000001"
    folder.mkdir(parents=True)
    from omegaconf import OmegaConf

    ckpt.save_atomic({"config": OmegaConf.to_container(cfg), "model": {}, "epoch": 1}, folder / ckpt.STATE_FILE)
    live = opened(config(uri, "seed=5"), exp_id)
    report = repair(uri, storage_path=str(tmp_path / "runs"))
    actions = {(r.run_id, r.action) for r in report.repairs}
    assert (dead.info.run_id, "closed as FAILED") in actions
    assert (dead.info.run_id, "restored params and config.yaml") in actions
    assert (live.run_id, "left running (alive)") in actions
    run = client.get_run(dead.info.run_id)
    assert run.info.status == "FAILED" and run.data.params["model.name"] == "cifar_resnet20"
    assert client.get_run(live.run_id).info.status == "RUNNING"
    live.close("FINISHED")


def test_a_live_sweep_parent_has_a_heartbeat_refuses_a_second_driver_and_survives_repair(store):
    from raysys.tune.sweep import _refuse_live_parent

    uri, exp_id = store
    key = identity.sweep_key("space", ["seeds=[0]"])
    parent_id, _ = runs.open_run(uri, exp_id, key, {}, name_tag=identity.SWEEP_KEY_TAG, run_name="space")
    parent = rec.RunRecord.attach(uri, parent_id, "sweep 'space'", resumed=False)
    tags = MlflowClient(uri).get_run(parent_id).data.tags
    assert rec.HEARTBEAT_TAG in tags and tags[rec.DRIVER_TAG].endswith(f":{__import__('os').getpid()}")
    with pytest.raises(TrainingError, match="RUNNING in another live process"):
        _refuse_live_parent(uri, exp_id, key, "space")
    report = repair(uri)
    assert [r.action for r in report.repairs if r.run_id == parent_id] == ["left running (alive)"]
    parent.close("KILLED", "interrupted by the user (Ctrl-C)")
    _refuse_live_parent(uri, exp_id, key, "space")  # a closed parent is re-opened by the next sweep
    assert MlflowClient(uri).get_run(parent_id).info.status == "KILLED"
