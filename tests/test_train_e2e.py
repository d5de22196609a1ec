"""End to end on real components: Fashion-MNIST shards -> Ray Data -> Ray Train DDP -> MLflow."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from raysys.config import load_config
from raysys.config.schema import key_family
from raysys.errors import DataError, TrainingError
from raysys.train import checkpoint as ckpt
from raysys.driver.training import run_training
from raysys.track.runs import metric_history
from tests.conftest import REPO

DEMO = "cifar-resnet/fashion-mnist-resnet20"


def small_config(shards: Path, workdir: Path, *extra: str):
    return load_config(DEMO, [
        f"data.path={shards}", "data.limit=1024", "data.test_limit=500", "train.epochs=2",
        "train.batch_size=64", f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}",
        f"checkpoint.storage_path={workdir / 'runs'}", *extra,
    ])


def mlflow_client(workdir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def history(client, run_id: str, key: str):
    return [(m.step, m.value) for m in sorted(metric_history(client, run_id, key), key=lambda m: m.step)]


def test_two_workers_train_and_log_everything_to_mlflow(fashion_shards, ray_cluster, workdir, capsys):
    cfg = small_config(fashion_shards, workdir, "scaling.num_workers=2", "seed=1")
    summary = run_training(cfg, progress=True)
    progress = capsys.readouterr().err.splitlines()
    # No terminal: plain lines from rank 0's progress inside each epoch, and one summary per epoch.
    inside = [line for line in progress if " batches  loss " in line]
    assert any("epoch 1/2" in line for line in inside) and any("epoch 2/2" in line for line in inside), progress
    assert all(" img/s" in line and " lr " in line and " acc " in line for line in inside)
    summaries = [line for line in progress if "train/loss" in line and "test/loss" in line]
    assert [line.split("raysys [")[1].split("] ")[1].split("  ")[0] for line in summaries] == ["epoch 1/2", "epoch 2/2"]

    client = mlflow_client(workdir)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == cfg.run_name
    assert client.get_experiment(run.info.experiment_id).name == "cifar-resnet"
    # The full resolved config, flattened, as params.
    assert run.data.params["train.epochs"] == "2"
    assert run.data.params["model.name"] == "cifar_resnet20"
    assert run.data.params["scaling.num_workers"] == "2"
    # Only what the run uses: no FlexConv, MIMO, antialiased or STIR key (raysys/config/schema.py).
    assert [k for k in run.data.params if key_family(k)] == [] and len(run.data.params) < 134
    tags = run.data.tags
    assert tags["raysys.preset"] == DEMO and tags["raysys.seed"] == "1"
    assert tags["raysys.world_size"] == "2" and tags["raysys.device"] == "cpu"
    assert tags["raysys.version"] and tags["mlflow.source.git.commit"]
    # Metrics per epoch with step = epoch.
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "images_per_sec", "lr"):
        assert [step for step, _ in history(client, run.info.run_id, key)] == [1, 2], key
    # Evaluation counted every test example exactly once across the two workers.
    assert [value for _, value in history(client, run.info.run_id, "test_count")] == [500, 500]
    assert summary["test_accuracy"] == pytest.approx(history(client, run.info.run_id, "test_acc")[-1][1])
    assert summary["test_accuracy"] > 0.25  # chance is 0.1 (2 epochs on 1,000 images: 0.294 here, old code too)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "checkpoint"} <= artifacts
    local = client.download_artifacts(run.info.run_id, "checkpoint/state.pt", str(workdir))
    state = ckpt.load_file(Path(local))
    assert state["epoch"] == 2
    assert set(state) >= {"model", "optimizer", "scheduler", "rng", "config", "history"}
    assert state["config"]["run_name"] == cfg.run_name
    assert [k for k in state["config"] if key_family(k)] == []

    # Running the finished run again trains nothing and keeps one run with no duplicate steps.
    again = run_training(cfg, progress=False)
    assert again["run_id"] == summary["run_id"]
    assert [step for step, _ in history(client, run.info.run_id, "test_acc")] == [1, 2]
    assert client.get_run(summary["run_id"]).info.status == "FINISHED"


@pytest.mark.slow
def test_same_seed_on_one_worker_gives_identical_metrics(fashion_shards, ray_cluster, workdir):
    client = mlflow_client(workdir)
    results = []
    for name in ("det-a", "det-b"):
        cfg = small_config(fashion_shards, workdir, "scaling.num_workers=1", "seed=5", f"run_name={name}", "data.limit=512")
        run_id = run_training(cfg, progress=False)["run_id"]
        results.append({k: history(client, run_id, k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")})
    assert results[0] == results[1]


@pytest.mark.slow  # the CLI test below and bad-input's nan-loss case cover it in the default suite
def test_nan_loss_stops_the_run_and_marks_it_failed(fashion_shards, ray_cluster, workdir):
    cfg = small_config(fashion_shards, workdir, "scaling.num_workers=1", "train.lr=1e30", "train.scheduler=constant",
                       "failure.max_failures=0", "run_name=nan-run")
    with pytest.raises(TrainingError, match=r"non-finite loss .* at epoch 1, batch \d+"):
        run_training(cfg, progress=False)
    client = mlflow_client(workdir)
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()], "attributes.run_name = 'nan-run'")
    assert run.info.status == "FAILED"
    assert "non-finite loss" in run.data.tags["raysys.failure_reason"]


def test_missing_shards_are_refused_before_ray_starts(workdir):
    cfg = load_config(DEMO, [f"data.path={workdir / 'nowhere'}"])
    with pytest.raises(DataError, match=r"run `python -m raysys prepare fashion-mnist"):
        run_training(cfg, progress=False)
    assert not (workdir / "mlflow.db").exists()


def _checkpoints(storage: Path, name: str):
    """Ray Train's checkpoints of run ``name`` (its folder is ``<name>-<config fingerprint>``)."""
    return sorted(p for p in storage.glob(f"{name}-*/checkpoint_*") if p.is_dir())


def test_killed_run_resumes_from_its_checkpoint_in_the_same_mlflow_run(fashion_shards, tmp_path):
    args = [
        sys.executable, "-m", "raysys", "train", DEMO, f"data.path={fashion_shards}", "data.limit=2048",
        "data.test_limit=256", "train.epochs=3", "train.batch_size=64", "scaling.num_workers=1", "run_name=killed",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"checkpoint.storage_path={tmp_path / 'runs'}", "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 600
    while not _checkpoints(tmp_path / "runs", "killed") and time.time() < deadline and first.poll() is None:
        time.sleep(0.5)
    if not _checkpoints(tmp_path / "runs", "killed"):
        os.killpg(first.pid, signal.SIGKILL)
        output = first.communicate(timeout=60)[0].decode(errors="replace")
        pytest.fail(f"no checkpoint appeared (exit code {first.returncode}):\n{output[-4000:]}")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)

    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]

    client = mlflow_client(tmp_path)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "attributes.run_name = 'killed'")
    assert len(runs) == 1  # the same MLflow run, resumed
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert [step for step, _ in history(client, run.info.run_id, "test_acc")] == [1, 2, 3]
    state = ckpt.load_file(_checkpoints(tmp_path / "runs", "killed")[-1])
    assert state["epoch"] == 3
    assert len(state["history"]) == 3
    assert isinstance(state["model"]["conv1.weight"], torch.Tensor)


def _cli_train(tmp_path: Path, shards: Path, *extra: str):
    from tests.conftest import run_cli

    return run_cli("train", DEMO, f"data.path={shards}", "data.limit=256", "data.test_limit=128", "train.epochs=1",
                   "train.batch_size=64", "scaling.num_workers=1", "run_name=cli", "--no-progress",
                   f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"checkpoint.storage_path={tmp_path / 'runs'}",
                   *extra, cwd=tmp_path)


def _cli_runs(tmp_path: Path):
    client = mlflow_client(tmp_path)
    return client.search_runs([e.experiment_id for e in client.search_experiments()], "attributes.run_name = 'cli'",
                              order_by=["attributes.start_time ASC"])


def test_cli_a_finished_run_is_answered_without_starting_ray(fashion_shards, tmp_path):
    from raysys.driver import record as rec
    from raysys.track import runs as track_runs

    # A FINISHED run of exactly this config, as a finished `raysys train` leaves it.
    cfg = load_config(DEMO, [f"data.path={fashion_shards}", "data.limit=256", "data.test_limit=128", "train.epochs=1",
                             "train.batch_size=64", "scaling.num_workers=1", "run_name=cli",
                             f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"checkpoint.storage_path={tmp_path / 'runs'}"])
    exp_id = track_runs.experiment_id(cfg.tracking.uri, "cifar-resnet")
    record = rec.RunRecord.open(cfg, exp_id, rec.lookup(cfg.tracking.uri, exp_id, cfg), kind="train", tags={}, label="run")
    record.close("FINISHED")
    [run] = _cli_runs(tmp_path)

    again = _cli_train(tmp_path, fashion_shards)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "already finished"
    assert again.stderr.rstrip().splitlines()[-1].startswith("run cli already finished")
    assert not list((tmp_path / "runs").glob("cli-*"))  # no Ray Train run started
    [same] = _cli_runs(tmp_path)
    assert (same.info.run_id, same.info.end_time, same.info.status) == (run.info.run_id, run.info.end_time, "FINISHED")


@pytest.mark.slow
def test_cli_worker_failure_is_the_last_line_after_rays_forwarded_output(fashion_shards, tmp_path):
    failed = _cli_train(tmp_path, fashion_shards, "train.lr=1e30", "train.scheduler=constant", "failure.max_failures=0")
    assert failed.returncode == 1
    # Ray's own output is off the console: only raysys's lines, Ray's warnings and errors as one
    # `raysys: Ray ...` line each; all of it is in console.log beside the run's checkpoints.
    lines = failed.stderr.rstrip().splitlines()
    assert all(line.startswith(("raysys", "error: ", "note: ")) for line in lines), failed.stderr[-3000:]
    [log] = (tmp_path / "runs").glob("cli-*/console.log")
    assert sum(f"Ray's own output is in {log}" in line for line in lines) == 1
    assert "(RayTrainWorker pid=" in log.read_text()  # Ray did forward the workers' output, into the log
    assert any(line.startswith("raysys: Ray error (") and line.endswith(f"{log.parent.name}/console.log]") for line in lines)
    last = lines[-1]  # ... and nothing follows the error
    assert last.startswith("error: training run 'cli' failed: non-finite loss"), failed.stderr[-3000:]
    [run] = _cli_runs(tmp_path)
    assert run.info.status == "FAILED" and "non-finite loss" in run.data.tags["raysys.failure_reason"]


@pytest.mark.slow
def test_cli_rerun_trains_a_new_run_and_marks_the_old_one_superseded(fashion_shards, tmp_path):
    assert _cli_train(tmp_path, fashion_shards).returncode == 0
    rerun = _cli_train(tmp_path, fashion_shards, "--rerun")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    old, new = _cli_runs(tmp_path)
    assert json.loads(rerun.stdout.strip().splitlines()[-1])["run_id"] == new.info.run_id
    assert new.info.status == old.info.status == "FINISHED"
    assert old.data.tags["raysys.superseded_by"] == new.info.run_id
    # Ray Train storage of its own: the old run's checkpoints are untouched.
    assert old.data.tags["raysys.train_name"] != new.data.tags["raysys.train_name"]
