"""The driver of ``raysys train`` killed mid-epoch, with SIGTERM and then SIGKILL, and re-run (slow).

One run, three commands: the first is stopped with SIGTERM during epoch 2, the second
(resuming) is SIGKILL'd with its process group during a later epoch, the third finishes.
The record must not show the faults except in ``raysys.attempts``: one MLflow run, the
same run id throughout, epochs 1..N once each, FINISHED, every param, no failure reason.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raysys.config import load_config
from raysys.config.loader import flatten
from raysys.driver.record import ATTEMPTS_TAG
from raysys.track.runs import FAILURE_TAG
from raysys.train import checkpoint as ckpt
from raysys.track.runs import metric_history
from tests.conftest import REPO

pytestmark = pytest.mark.slow
DEMO = "cifar-resnet/fashion-mnist-resnet20"
EPOCHS = 4


def overrides(workdir: Path, shards: Path) -> list:
    return [
        f"data.path={shards}", "data.limit=2048", "data.test_limit=256", f"train.epochs={EPOCHS}", "train.batch_size=64",
        "scaling.num_workers=1", "run_name=faults", f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}",
        f"checkpoint.storage_path={workdir / 'runs'}",
    ]


def checkpoint_epochs(workdir: Path) -> list:
    found = sorted((workdir / "runs").glob("faults-*/checkpoint_*/" + ckpt.STATE_FILE))
    return sorted(ckpt.load_file(p)["epoch"] for p in found)


def start(workdir: Path, shards: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "raysys", "train", DEMO, *overrides(workdir, shards), "--no-progress"]
    return subprocess.Popen(args, cwd=workdir, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_epoch(process: subprocess.Popen, workdir: Path, epoch: int, timeout: float = 900) -> None:
    """Until a checkpoint of ``epoch`` exists: the driver is then in the middle of the next epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if epoch in checkpoint_epochs(workdir):
            return
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    out, err = process.communicate(timeout=60)
    pytest.fail(f"no checkpoint of epoch {epoch} (exit code {process.returncode}):\n{err[-4000:]}")


def the_run(workdir: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    found = client.search_runs([e.experiment_id for e in client.search_experiments()], "attributes.run_name = 'faults'")
    assert len(found) == 1, [r.info.run_id for r in found]
    return client, found[0]


def test_sigterm_then_sigkill_mid_epoch_and_a_rerun_leave_one_complete_run(fashion_shards, tmp_path):
    first = start(tmp_path, fashion_shards)
    wait_for_epoch(first, tmp_path, 1)
    os.kill(first.pid, signal.SIGTERM)  # the driver only, as `kill PID` or a scheduler would
    stopped = time.monotonic()
    _, err = first.communicate(timeout=120)
    print(f"SIGTERM -> exit: {time.monotonic() - stopped:.1f} s")
    assert first.returncode != 0
    assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM)", f"exit {first.returncode}: {err[-3000:]}"
    _, run = the_run(tmp_path)
    run_id = run.info.run_id
    assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags[FAILURE_TAG]

    second = start(tmp_path, fashion_shards)
    done = max(checkpoint_epochs(tmp_path))
    wait_for_epoch(second, tmp_path, done + 1)
    os.killpg(second.pid, signal.SIGKILL)  # the driver and its local Ray: a lost machine
    second.wait(timeout=60)
    _, run = the_run(tmp_path)
    assert run.info.run_id == run_id and run.info.status == "RUNNING"  # nobody could close it

    third = start(tmp_path, fashion_shards)
    out, err = third.communicate(timeout=900)
    assert third.returncode == 0, err[-4000:]
    assert json.loads(out.strip().splitlines()[-1])["run_id"] == run_id

    client, run = the_run(tmp_path)
    assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in metric_history(client, run_id, "test_acc"))
    assert steps == list(range(1, EPOCHS + 1))  # no gap, no duplicate
    assert FAILURE_TAG not in run.data.tags
    expected = set(flatten(load_config(DEMO, overrides(tmp_path, fashion_shards))))
    assert set(run.data.params) == expected
    attempts = json.loads(run.data.tags[ATTEMPTS_TAG])
    assert [a["status"] for a in attempts] == ["KILLED", "FAILED"]
    assert "SIGTERM" in attempts[0]["reason"] and "died" in attempts[1]["reason"]
