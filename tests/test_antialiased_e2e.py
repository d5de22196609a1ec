"""End to end: an ImageFolder of JPEGs -> Parquet shards (read through a file:// URI) ->
Ray Data decode + RandomResizedCrop -> Ray Train (2 workers, gradient accumulation) ->
accuracy, shift and diagonal consistency on the trained model, all in one MLflow run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raysys.config import load_config


def write_imagefolder(root: Path) -> Path:
    """2 classes, 8 train and 4 val JPEGs each, of varying size; class "red" has a red channel."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        for name in ("gray", "red"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = (rng.random((40 + i, 48, 3)) * 255).astype(np.uint8)
                if name == "red":
                    pixels[:, :, 0] = 255
                Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=90)
    return root


def test_tiny_imagenet_run_logs_accuracy_and_consistency(ray_cluster, workdir):
    from mlflow.tracking import MlflowClient

    from pipelines.prepare import prepare
    from raysys.driver.training import run_training

    shards = workdir / "shards"
    prepare("imagenet", str(write_imagefolder(workdir / "imagefolder")), str(shards))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cfg = load_config("antialiased/scratch-resnet18_lpf4", [
        f"data.path={shards.as_uri()}", "data.resize=32", "train.epochs=1", "train.batch_size=8",
        "train.accumulate_steps=2", f"tracking.uri={uri}", f"checkpoint.storage_path={workdir / 'runs'}",
        "scaling.num_workers=2", "evaluate.after_training=[accuracy,shift-consistency,diagonal-consistency]",
        "evaluate.max_shift=8", "evaluate.diagonal_offsets=9", "evaluate.shift_passes=2",
    ])
    summary = run_training(cfg, progress=False)

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["eval_count"] == 8  # every validation image once, across 2 workers
    assert 0 <= metrics["eval_top1"] <= metrics["eval_top5"] <= 100
    assert metrics["eval_top1"] == pytest.approx(100 * metrics["test_acc"], abs=25)
    assert metrics["eval_consistency_pairs"] == 16  # 8 images x 2 passes
    assert 0 <= metrics["eval_consistency"] <= 100
    assert "eval_diagonal_top1" in metrics
    # lr steps once per 2 batches: 16 rows / 2 workers / 4 per worker = 2 batches = 1 step.
    assert metrics["lr"] == pytest.approx(0.1)
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"], "diagonal")}
    assert artifacts == {f"diagonal/diag_{k}.npy" for k in ("probs", "probs2", "corrs", "preds")}
    local = client.download_artifacts(summary["run_id"], "diagonal/diag_corrs.npy", str(workdir))
    assert np.load(local).shape == (8, 9)
