"""Fault tolerance on the 2-node local cluster (slow): a worker killed, the driver killed, a node killed.

Each case submits a 3-epoch training job, waits for the first checkpoint, injures the
cluster, and then checks: the job succeeds, its MLflow run is the one run of that name,
per-epoch metrics have steps 1..3 with no gap and no duplicate, and the final checkpoint
loads. The figures (restarts, epochs re-done) are printed and recorded in docs/cluster.md.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from raysys.train import checkpoint as ckpt
from raysys.track.runs import metric_history
from tests.conftest import REPO
from tests.test_cluster import P, LocalCluster, local_cluster  # noqa: F401  (the session cluster)

pytestmark = pytest.mark.slow
EPOCHS = 3


@pytest.fixture(scope="module")
def cluster(local_cluster):
    return local_cluster


def job_client(cluster: LocalCluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.dashboard)


def submit(cluster: LocalCluster, shards: Path, run_name: str) -> str:
    runtime_env = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
    runtime_env["working_dir"] = str(REPO)
    overrides = [
        f"data.path={shards}", "data.limit=2048", "data.test_limit=256", f"train.epochs={EPOCHS}", "train.batch_size=64",
        "scaling.num_workers=2", "scaling.placement_strategy=SPREAD", "failure.max_failures=3",
        f"tracking.uri={cluster.tracking_uri}", f"checkpoint.storage_path={cluster.storage}", "checkpoint.shared=true",
        f"run_name={run_name}",
    ]
    return job_client(cluster).submit_job(entrypoint=f"python -m raysys train {P} {' '.join(overrides)}", runtime_env=runtime_env)


def checkpoints(cluster: LocalCluster, run_name: str):
    return sorted(p for p in cluster.storage.glob(f"{run_name}-*/checkpoint_*") if (p / ckpt.STATE_FILE).is_file())


def wait_for_checkpoint(cluster: LocalCluster, job_id: str, run_name: str, timeout: float = 1200) -> int:
    """The epoch of the first checkpoint; fails if the job ends first."""
    from ray.job_submission import JobStatus

    client = job_client(cluster)
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = checkpoints(cluster, run_name)
        if found:
            return int(ckpt.load_file(found[-1])["epoch"])
        status = client.get_job_status(job_id)
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.SUCCEEDED):
            pytest.fail(f"job ended ({status}) before a checkpoint:\n{client.get_job_logs(job_id)[-4000:]}")
        time.sleep(1)
    pytest.fail("no checkpoint appeared")


def wait_for_job(cluster: LocalCluster, job_id: str, timeout: float = 1800) -> str:
    from ray.job_submission import JobStatus

    client = job_client(cluster)
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get_job_status(job_id)
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.SUCCEEDED):
            return status
        time.sleep(2)
    pytest.fail(f"job {job_id} still running after {timeout} s")


def new_workers(cluster: LocalCluster, known: set, alive_only: bool = False):
    return [a for a in cluster.train_workers(alive_only) if a.actor_id not in known]


def known_workers(cluster: LocalCluster) -> set:
    return {a.actor_id for a in cluster.train_workers()}


def assert_one_complete_run(cluster: LocalCluster, run_name: str) -> None:
    client = cluster.client()
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiment_ids, f"attributes.run_name = '{run_name}'")
    assert len(runs) == 1, [r.info.run_id for r in runs]
    run = runs[0]
    assert run.info.status == "FINISHED"
    for key in ("test_acc", "train_loss", "epoch"):
        steps = [m.step for m in metric_history(client, run.info.run_id, key)]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (key, steps)  # no gap, no duplicate
    state = ckpt.load_file(checkpoints(cluster, run_name)[-1])
    assert state["epoch"] == EPOCHS and len(state["history"]) == EPOCHS


def report(case: str, resumed_from: int, restarts: int) -> None:
    print(f"\n[fault tolerance] {case}: resumed from the epoch-{resumed_from} checkpoint after {restarts} restart(s); "
          f"re-done: the part of epoch {resumed_from + 1} that had run")


def test_killed_worker_is_restarted_from_the_latest_checkpoint(cluster, fashion_shards):
    known = known_workers(cluster)
    job_id = submit(cluster, fashion_shards, "ft-worker")
    epoch = wait_for_checkpoint(cluster, job_id, "ft-worker")
    victim = new_workers(cluster, known, alive_only=True)[0]
    os.kill(victim.pid, signal.SIGKILL)
    assert wait_for_job(cluster, job_id) == "SUCCEEDED", job_client(cluster).get_job_logs(job_id)[-4000:]
    assert_one_complete_run(cluster, "ft-worker")
    restarts = len(new_workers(cluster, known)) // 2 - 1
    assert restarts >= 1
    report("worker killed", epoch, restarts)


def test_killed_driver_resumes_when_resubmitted(cluster, fashion_shards):
    job_id = submit(cluster, fashion_shards, "ft-driver")
    epoch = wait_for_checkpoint(cluster, job_id, "ft-driver")
    job_client(cluster).stop_job(job_id)
    assert wait_for_job(cluster, job_id) == "STOPPED"
    again = submit(cluster, fashion_shards, "ft-driver")
    assert wait_for_job(cluster, again) == "SUCCEEDED", job_client(cluster).get_job_logs(again)[-4000:]
    assert_one_complete_run(cluster, "ft-driver")
    report("driver killed and re-submitted", epoch, 1)


def test_lost_node_run_continues_on_the_remaining_node(cluster, fashion_shards):
    known = known_workers(cluster)
    job_id = submit(cluster, fashion_shards, "ft-node")
    epoch = wait_for_checkpoint(cluster, job_id, "ft-node")
    nodes = {a.node_id for a in new_workers(cluster, known, alive_only=True)}
    assert len(nodes) == 2  # SPREAD: one worker per node before the loss
    pgid = int((cluster.state / "ray-node2.pid").read_text())
    before_kill = known_workers(cluster)
    os.killpg(pgid, signal.SIGKILL)  # the second node disappears
    assert wait_for_job(cluster, job_id) == "SUCCEEDED", job_client(cluster).get_job_logs(job_id)[-4000:]
    assert_one_complete_run(cluster, "ft-node")
    survivors = {a.node_id for a in new_workers(cluster, before_kill)}
    assert len(survivors) == 1 and survivors < nodes  # the restarted workers all ran on the remaining node
    restarts = len(new_workers(cluster, known)) // 2 - 1
    assert restarts >= 1
    report("second node killed", epoch, restarts)
