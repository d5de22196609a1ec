"""MIMOConv end to end: CIFAR pickles -> shards -> Ray Train (mimo recipe) -> MLflow -> `raysys eval`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from raysys.config import load_config
from raysys.train import checkpoint as ckpt
from raysys.driver.training import run_training
from raysys.track import metric_names
from raysys.track.runs import metric_history
from tests.conftest import cifar10_shards

TINY = ["model.name=MIMONet-10", "mimo.width=1", "mimo.initial_width=1", "superposition.capacity=2"]


@pytest.fixture(scope="module")
def cifar_shards(tmp_path_factory) -> Path:
    """320 train / 64 test random images in the real CIFAR-10 pickle format, as shards."""
    return cifar10_shards(tmp_path_factory.mktemp("cifar"), train_per_batch=64)


def history(client, run_id: str, key: str):
    return [m.value for m in sorted(metric_history(client, run_id, key), key=lambda m: m.step)]


def test_dynamic_mimonet_trains_on_ray_and_evaluates_per_mode(cifar_shards, ray_cluster, workdir):
    from mlflow.tracking import MlflowClient

    from raysys.cli.main import main

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cfg = load_config("mimoconv/cifar10-mimonet28-10-dynamic", [
        *TINY, "superposition.sup_frequency=0.5", f"data.path={cifar_shards}", "data.holdout=64",
        "train.epochs=1", "train.batch_size=32", "train.eval_batch_size=0",
        f"tracking.uri={uri}", f"checkpoint.storage_path={workdir / 'runs'}", "scaling.num_workers=1",
    ])
    summary = run_training(cfg, progress=False)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    metrics = metric_names.flat_view(run.data.metrics)
    # Evaluated on the 64 held-out train rows, at the capacity and at sup_low.
    assert metrics["test_count"] == 64 and metrics["test_sup_low_count"] == 64
    for key in ("test_acc", "test_sup_low_acc", "train_binding_reg", "train_isometry_reg", "grad_norm",
                "skipped_steps", "lr", "mean_relu_parameter"):
        assert key in metrics, key
    assert metrics["skipped_steps"] == 0  # epoch 0: no threshold yet
    # 256 training rows, loader batch 2 x 32, 2 passes: 8 OneCycle steps per epoch.
    local = client.download_artifacts(run.info.run_id, "checkpoint/state.pt", str(workdir))
    scheduler = ckpt.load_file(Path(local))["scheduler"]
    assert scheduler["total_steps"] == 8 and scheduler["last_epoch"] == 8

    # validate_dynamic.py, verbatim -> `raysys eval <run name> superposition.sup_low=1 ...`:
    # every mode n | 2, logged into the trained run.
    assert main(["legacy", "--", "python", "src/validate_dynamic.py", "--sup_low", "1", "-b", "10", "-c", cfg.run_name,
                 "-w", "1", "--initial_width", "1", "MIMONet-10", "CIFAR10", "HRR", "2"]) == 0
    metrics = metric_names.flat_view(client.get_run(summary["run_id"]).data.metrics)
    for n in (1, 2):
        assert metrics[f"eval_dynamic_n{n}_count"] == 64  # the test split; 20 does not divide 64: padded, all counted
        assert 0 <= metrics[f"eval_dynamic_n{n}_top1"] <= 100 and metrics[f"eval_dynamic_n{n}_images_per_sec"] > 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert {"eval/dynamic.json", "eval/dynamic.csv"} <= artifacts
    table = Path(client.download_artifacts(run.info.run_id, "eval/dynamic.csv", str(workdir))).read_text().splitlines()
    assert table[0] == "superposition,top1,images_per_sec,count" and [row.split(",")[0] for row in table[1:]] == ["1", "2"]
    saved = json.loads(Path(client.download_artifacts(run.info.run_id, "eval/dynamic.json", str(workdir))).read_text())
    assert {"superposition.sup_low=1", "evaluate.batch_size=20"} <= set(saved["overrides"])  # -b 10 x N=2
    # By run id too; the architecture is the checkpoint's: a contradicting override is refused in one line.
    assert main(["eval", summary["run_id"], "mimo.width=4"]) == 2
