"""The cluster story: shared-storage rule (unit), and `ray job submit` on a 2-node local cluster (slow).

The slow tests start `cluster/local-up.sh` (a Ray head and a second raylet on 127.0.0.1,
an MLflow server on loopback), submit jobs with `ray job submit`, and always stop what
they started with `cluster/local-down.sh` (by the PIDs the script recorded).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raysys.errors import ConfigError
from raysys.train.storage import check_shared_storage, filesystem_type
from tests.conftest import REPO

P = "cifar-resnet/fashion-mnist-resnet20"
ONE = [{"NodeID": "a", "Alive": True}]
TWO = [{"NodeID": "a", "Alive": True}, {"NodeID": "b", "Alive": True}, {"NodeID": "c", "Alive": False}]


# -- storage rule (unit, mocked node list) -----------------------------------------------------
def test_local_storage_is_fine_on_one_node(tmp_path):
    check_shared_storage(str(tmp_path / "runs"), f"sqlite:///{tmp_path}/mlflow.db", False, nodes=ONE)


def test_local_storage_is_refused_on_two_nodes(tmp_path):
    with pytest.raises(ConfigError, match=r"checkpoint.storage_path=.*/runs is a local path, but the cluster has 2 nodes"):
        check_shared_storage(str(tmp_path / "runs"), "http://mlflow:5000", False, nodes=TWO)


def test_uri_or_declared_shared_storage_is_accepted_on_two_nodes(tmp_path):
    check_shared_storage("s3://bucket/runs", "http://mlflow:5000", False, nodes=TWO)
    check_shared_storage(str(tmp_path / "runs"), "http://mlflow:5000", True, nodes=TWO)


def test_local_sqlite_tracking_is_refused_on_two_nodes(tmp_path):
    with pytest.raises(ConfigError, match=r"tracking.uri=sqlite:///.* is a local sqlite file, but the cluster has 2 nodes"):
        check_shared_storage("s3://bucket/runs", f"sqlite:///{tmp_path}/mlflow.db", False, nodes=TWO)


def test_a_path_on_nfs_counts_as_shared(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nfiler:/export {tmp_path}/shared nfs4 rw 0 0\n")
    assert filesystem_type(str(tmp_path / "shared" / "runs"), str(mounts)) == "nfs4"
    assert filesystem_type(str(tmp_path / "sharedX"), str(mounts)) == "ext4"
    check_shared_storage(str(tmp_path / "shared" / "runs"), "http://mlflow:5000", False, nodes=TWO, mounts_file=str(mounts))
    with pytest.raises(ConfigError):
        check_shared_storage(str(tmp_path / "local"), "http://mlflow:5000", False, nodes=TWO, mounts_file=str(mounts))


def test_a_sweep_with_local_storage_is_refused_on_two_nodes_before_any_run(tmp_path, monkeypatch):
    """The storage rule runs before the sweep's parent run opens (node count faked, no Ray started)."""
    import raysys.tune.sweep as sweep
    from mlflow.tracking import MlflowClient

    from raysys.tune.space import load_space
    from tests.test_sweep import write_space

    monkeypatch.setattr(sweep, "ensure_ray", lambda min_cpus=0: None)
    monkeypatch.setattr("raysys.train.storage.alive_nodes", lambda nodes=None: TWO[:2])
    space = load_space(write_space(tmp_path / "space.yaml", tmp_path / "shards", tmp_path))
    with pytest.raises(ConfigError, match=r"checkpoint.storage_path=.*/runs is a local path, but the cluster has 2 nodes"):
        sweep.run_sweep(space)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_a_sweeps_storage_is_checked_once_per_distinct_setting(monkeypatch):
    """Thousands of trials share a few settings; each check asks Ray for its nodes."""
    from omegaconf import OmegaConf

    import raysys.tune.sweep as sweep

    asked = []
    monkeypatch.setattr("raysys.train.storage.alive_nodes", lambda nodes=None: asked.append(1) or TWO[:1])

    def trial(storage: str):
        return OmegaConf.create({"checkpoint": {"storage_path": storage, "shared": False},
                                 "tracking": {"uri": "http://mlflow:5000", "enabled": True}})

    sweep.check_trial_storage([trial("/runs/a"), trial("/runs/a"), trial("/runs/b"), trial("/runs/a")])
    assert len(asked) == 2


def test_a_sweep_runs_at_most_what_the_cluster_holds(monkeypatch):
    import ray

    from raysys.config.loader import load_config
    from raysys.tune import sweep

    configs = [load_config(P, ["scaling.num_workers=2", "scaling.use_gpu=false"])]
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 5.0})
    monkeypatch.setattr(sweep, "_autoscaler_max_resources", lambda: None)
    assert sweep.default_concurrency(configs) == 2  # (5 CPUs - 1 for Ray Data) / 2 CPUs per trial
    monkeypatch.setattr(sweep, "_autoscaler_max_resources", lambda: {"CPU": 17})
    assert sweep.default_concurrency(configs) == 8  # the autoscaler may grow the cluster to 17 CPUs
    assert sweep.running_limit(8, 2, "s") == 2 and sweep.running_limit(0, 2, "s") == 2
    assert sweep.running_limit(1, 2, "s") == 1


def test_cluster_files_parse():
    for name in ("runtime_env.yaml", "ray-cluster.yaml", "kuberay-raycluster.yaml", "kuberay-rayjob.yaml"):
        docs = list(yaml.safe_load_all((REPO / "cluster" / name).read_text()))
        assert docs and all(isinstance(d, dict) for d in docs), name


# -- a 2-node cluster on this machine (slow) --------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalCluster:
    """cluster/local-up.sh with free ports and its own state folder; down() stops it by PID."""

    def __init__(self, state: Path):
        self.state = state
        ports = {name: free_port() for name in ("GCS", "DASHBOARD", "CLIENT", "MLFLOW", "HEAD_AGENT", "NODE_AGENT")}
        self.env = {**os.environ, "RAYSYS_CLUSTER_DIR": str(state), **{f"RAYSYS_{k}_PORT": str(v) for k, v in ports.items()}}
        # local-up.sh runs `ray`, `mlflow` and `python` from PATH: this interpreter's (e.g. make's .venv, not activated).
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env.pop("RAY_ADDRESS", None)
        # Clients of this cluster (ray job submit, the state API, drivers) present its token (local-up.sh makes it).
        self.env.pop("RAY_AUTH_TOKEN", None)
        self.env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(state / "auth_token")})
        self.dashboard = f"http://127.0.0.1:{ports['DASHBOARD']}"
        self.tracking_uri = f"http://127.0.0.1:{ports['MLFLOW']}"
        self.storage = state / "storage"

    def up(self) -> None:
        result = subprocess.run(["nice", "-n", "5", str(REPO / "cluster" / "local-up.sh")], env=self.env,
                                capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in self.state.glob("*.log"))
            self.down()
            pytest.fail(f"local-up.sh failed: {result.stderr}{logs}")

    def down(self) -> None:
        subprocess.run([str(REPO / "cluster" / "local-down.sh")], env=self.env, capture_output=True, timeout=300)

    def submit(self, *argv: str, timeout: float = 1500) -> subprocess.CompletedProcess:
        command = ["ray", "job", "submit", "--address", self.dashboard, "--working-dir", ".",
                   "--runtime-env", "cluster/runtime_env.yaml", "--", sys.executable, "-m", "raysys", *argv]
        return subprocess.run(command, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)

    def train_overrides(self, shards: Path, *extra: str) -> list:
        return [f"data.path={shards}", "data.limit=512", "data.test_limit=256", "train.epochs=1", "train.batch_size=64",
                f"tracking.uri={self.tracking_uri}", f"checkpoint.storage_path={self.storage}", *extra]

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def train_workers(self, alive_only: bool = False) -> list:
        """Ray Train worker actors of this cluster (dead ones too, unless ``alive_only``), from the state API."""
        from ray.util.state import list_actors

        filters = [("class_name", "=", "RayTrainWorker")] + ([("state", "=", "ALIVE")] if alive_only else [])
        return list_actors(address=self.dashboard, filters=filters, detail=True, limit=10000)


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory):
    """One local cluster for the slow cluster and fault-tolerance tests (the node-loss test runs last)."""
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    cluster.env["RAYSYS_HEAD_CPUS"] = "3"  # holds both workers and a CPU for Ray Data once node2 is gone
    cluster.up()
    # This test process queries the cluster's state API too: with the cluster's token.
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")}
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update({k: cluster.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")})
    try:
        yield cluster
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        cluster.down()


def last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


@pytest.mark.slow
def test_train_job_spreads_over_both_nodes_and_logs_to_the_server(local_cluster, fashion_shards):
    refused = local_cluster.submit("train", P, *local_cluster.train_overrides(fashion_shards, "run_name=refused"))
    assert refused.returncode != 0
    assert "is a local path, but the cluster has 2 nodes" in refused.stdout + refused.stderr

    known = {a.actor_id for a in local_cluster.train_workers()}
    result = local_cluster.submit("train", P, *local_cluster.train_overrides(
        fashion_shards, "scaling.num_workers=2", "scaling.placement_strategy=SPREAD", "checkpoint.shared=true", "run_name=job"))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = last_json(result.stdout)
    run = local_cluster.client().get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["raysys.world_size"] == "2"
    workers = [a for a in local_cluster.train_workers() if a.actor_id not in known]
    assert len(workers) == 2 and len({a.node_id for a in workers}) == 2  # one Ray Train worker on each node
    assert Path(summary["checkpoint"]).is_relative_to(local_cluster.storage)


@pytest.mark.slow
def test_sweep_job_runs_two_trials_into_the_server(local_cluster, fashion_shards, tmp_path):
    space = {
        "name": "cluster-sweep", "report": "cluster", "preset": P,
        "overrides": local_cluster.train_overrides(fashion_shards, "scaling.num_workers=1", "checkpoint.shared=true"),
        "grid": {"train.lr": [0.1, 0.05]}, "seeds": [0],
    }
    path = REPO / ".cluster-test-space.yaml"  # inside the uploaded working dir
    path.write_text(yaml.safe_dump(space))
    try:
        result = local_cluster.submit("sweep", path.name)
    finally:
        path.unlink()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = last_json(result.stdout)
    assert summary["trials"] == 2 and summary["failed"] == []
    client = local_cluster.client()
    experiment_id = client.get_run(summary["parent_run_id"]).info.experiment_id  # the preset's paper
    children = client.search_runs([experiment_id],
                                  f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'")
    assert sorted(r.info.status for r in children) == ["FINISHED", "FINISHED"]


def most_at_once(runs) -> int:
    """The largest number of MLflow runs that were open at the same moment."""
    events = sorted([(r.info.start_time, 1) for r in runs] + [(r.info.end_time, -1) for r in runs])
    level = peak = 0
    for _, step in events:  # an end sorts before a start at the same millisecond
        level += step
        peak = max(peak, level)
    return peak


@pytest.mark.slow
def test_eight_trials_queue_on_a_cluster_that_holds_fewer(local_cluster, fashion_shards):
    """max_concurrent=8 on a cluster of 5 CPUs with 2-CPU trials: 2 trainers at once, the others queue, none fails.

    First the same sweep without checkpoint.shared=true: refused before any trial or parent run.
    """
    def space(*extra: str) -> dict:
        return {
            "name": "cluster-load", "report": "cluster", "preset": P,
            "overrides": local_cluster.train_overrides(
                fashion_shards, "data.limit=128", "data.test_limit=64", "scaling.num_workers=2", *extra),
            "grid": {"train.lr": [0.1, 0.05, 0.02, 0.01]}, "seeds": [0, 1], "max_concurrent": 8,
        }

    path = REPO / ".cluster-load-space.yaml"  # inside the uploaded working dir
    try:
        path.write_text(yaml.safe_dump(space()))
        refused = local_cluster.submit("sweep", path.name)
        path.write_text(yaml.safe_dump(space("checkpoint.shared=true")))
        result = local_cluster.submit("sweep", path.name, timeout=3000)
    finally:
        path.unlink()
    client = local_cluster.client()
    assert refused.returncode != 0
    assert "is a local path, but the cluster has 2 nodes" in refused.stdout + refused.stderr
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "max_concurrent=8, but the cluster holds 2 trainers at once" in result.stdout + result.stderr
    summary = last_json(result.stdout)
    assert summary["trials"] == 8 and summary["started"] == 8 and summary["failed"] == []
    experiment_id = client.get_run(summary["parent_run_id"]).info.experiment_id
    parents = client.search_runs([experiment_id], "tags.`raysys.sweep` = 'cluster-load'")
    assert [p.info.run_id for p in parents] == [summary["parent_run_id"]]  # the refused sweep opened none
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'")
    assert sorted(r.info.status for r in children) == ["FINISHED"] * 8
    assert most_at_once(children) <= 2
    first_end = min(r.info.end_time for r in children)
    queued = [r for r in children if r.info.start_time >= first_end]
    print(f"{len(queued)} of 8 trials started after the first one finished (queued); at most {most_at_once(children)} at once")
    assert len(queued) >= 6
