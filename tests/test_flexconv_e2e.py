"""FlexConv end to end: Fashion-MNIST shards -> Ray Train -> MLflow, with the cross-resolution phases."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raysys.config import load_config
from raysys.train import checkpoint as ckpt
from raysys.driver.training import run_training
from raysys.track.runs import metric_history
from tests.conftest import REPO

PRESET = "flexconv/cifar10-flexnet7"
# A tiny FlexNet (FlexConv + MAGNet, 3 FlexConv layers) on 1-channel Fashion-MNIST.
TINY_FLEXNET = [
    "data.name=fashion-mnist", "train.normalize=dataset", "train.augment=None", "flexconv.net.no_hidden=12", "flexconv.net.no_blocks=1",
    "flexconv.net.block_width_factors=[1.0, 1]", "flexconv.net.dropout=0.0", "flexconv.kernel.no_hidden=16", "train.batch_size=64",
    "train.scheduler_params.warmup_epochs=0", "scaling.num_workers=1",
]


def crossres_config(shards: Path, workdir: Path, *extra: str):
    return load_config(PRESET, [
        *TINY_FLEXNET, f"data.path={shards}", "data.limit=4096", "data.test_limit=400", "train.epochs=1",
        "cross_res.source_res=14", "cross_res.target_res=28", "cross_res.finetune_epochs=1",
        # Smooth kernels at init (input scale 3 instead of 25.6), kept below Nyquist by the regularizer.
        "flexconv.kernel.input_scale=3.0", "flexconv.kernel.regularize=true", "flexconv.kernel.regularize_params.target=gabor",
        "flexconv.kernel.regularize_params.factor=0.1",
        f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}", f"checkpoint.storage_path={workdir / 'runs'}", *extra,
    ])


def checkpoint_dirs(run_dir: Path) -> list:
    """Ray Train's checkpoint folders of a run, oldest first (not its checkpoint_manager_snapshot.json)."""
    return sorted(path for path in run_dir.glob("checkpoint_*") if path.is_dir())


def mlflow_history(uri: str, run_id: str, key: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return [(m.step, m.value) for m in sorted(metric_history(client, run_id, key), key=lambda m: m.step)]


def test_crossres_flexnet_trains_at_14_and_works_out_of_the_box_at_28(fashion_shards, ray_cluster, workdir):
    cfg = crossres_config(fashion_shards, workdir, "run_name=flexconv-crossres")
    summary = run_training(cfg, progress=False)
    uri = cfg.tracking.uri
    run_id = summary["run_id"]

    def metric(key):
        return mlflow_history(uri, run_id, key)

    # Two phases, one run: epoch 1 at 14x14 (grid 15), epoch 2 fine-tuned at 28x28 (grid 29).
    assert metric("phase") == [(1, 0.0), (2, 1.0)]
    assert metric("resolution") == [(1, 14.0), (2, 28.0)]
    [(_, source)], [(_, ootb)] = metric("source_test_acc"), metric("ootb_test_acc")
    assert source == metric("test_acc")[0][1]
    assert metric("source_best_epoch") == [(2, 1.0)]  # fine-tuning started from the best (here: only) source epoch
    assert source > 0.22  # chance is 0.1 (64 steps of a 3-layer FlexNet: about 0.30)
    # Kernels regenerated on the finer grid keep the learned function: well above chance, near the source.
    assert ootb > 0.2 and ootb > source - 0.15
    assert metric("ootb_diff")[0][1] == pytest.approx(ootb - source)
    assert metric("final_test_acc") == [(2, metric("test_acc")[1][1])]
    # Kernel statistics per epoch for each of the 3 FlexConv layers; Gabor frequencies (regularized).
    for i in range(3):
        for key in (f"kernel_size_l{i:02d}", f"mask_sigma_x_l{i:02d}", f"mask_sigma_y_l{i:02d}", f"gabor_freq_l{i:02d}"):
            assert [step for step, _ in metric(key)] == [1, 2], key
    sizes = metric("kernel_size_l00")
    assert 1 <= sizes[0][1] <= 15 and 1 <= sizes[1][1] <= 29
    assert [v for _, v in metric("nyquist_l00")] == [pytest.approx((15 - 1) / 4 / 4), pytest.approx((29 - 1) / 4 / 4)]
    assert metric("train_gabor_reg")[0][1] > 0
    state = ckpt.load_file(Path(summary["checkpoint"]))
    assert state["phase"] == 1 and state["epoch"] == 2
    assert int(state["model"]["cconv1.train_length"][0]) == 29


@pytest.mark.slow
def test_killed_crossres_run_resumes_in_the_finetune_phase(fashion_shards, tmp_path):
    """Killed after the source phase's checkpoint: the resumed run starts the fine-tune phase (OOTB once)."""
    args = [
        sys.executable, "-m", "raysys", "train", PRESET, *TINY_FLEXNET, f"data.path={fashion_shards}", "data.limit=1024",
        "data.test_limit=256", "train.epochs=1", "cross_res.source_res=14", "cross_res.target_res=28",
        "cross_res.finetune_epochs=2", "run_name=killed-crossres", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"checkpoint.storage_path={tmp_path / 'runs'}", "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 900
    # A checkpoint counts once Ray Train has registered it in the run's snapshot (its files are complete).
    def run_folder() -> Path:  # Ray Train's folder is <run name>-<config fingerprint>
        found = sorted((tmp_path / "runs").glob("killed-crossres-*"))
        return found[0] if found else tmp_path / "runs" / "killed-crossres"

    while not ((run_folder() / "checkpoint_manager_snapshot.json").is_file() and checkpoint_dirs(run_folder())) \
            and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    runs_dir = run_folder()
    snapshot = runs_dir / "checkpoint_manager_snapshot.json"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    checkpoints = checkpoint_dirs(runs_dir)
    assert checkpoints, "no checkpoint appeared"
    assert ckpt.load_file(checkpoints[0])["phase"] == 0

    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()], "attributes.run_name = 'killed-crossres'")
    history = {k: mlflow_history(f"sqlite:///{tmp_path / 'mlflow.db'}", run.info.run_id, k)
               for k in ("test_acc", "phase", "ootb_test_acc", "resolution")}
    assert [s for s, _ in history["test_acc"]] == [1, 2, 3]
    assert history["phase"] == [(1, 0.0), (2, 1.0), (3, 1.0)]
    assert [s for s, _ in history["ootb_test_acc"]] == [2]
    assert [v for _, v in history["resolution"]] == [14.0, 28.0, 28.0]
    final = ckpt.load_file(checkpoint_dirs(runs_dir)[-1])
    assert final["epoch"] == 3 and final["phase"] == 1
