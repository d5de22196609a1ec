"""End to end: an ImageFolder of JPEGs -> Parquet shards (read through a file:// URI) ->
Ray Data decode + RandomResizedCrop -> Ray Train (2 workers, gradient accumulation) ->
accuracy, shift and diagonal consistency on the trained model, all in one MLflow run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raysys.config import load_config
from raysys.track import metric_names
from raysys.track.runs import metric_history


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
    metrics = metric_names.flat_view(run.data.metrics)
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


@pytest.mark.slow
def test_resume_continues_an_original_checkpoint(ray_cluster, workdir):
    """main.py --resume: a fresh run starts at the checkpoint's epoch, lr and optimizer, and knows its best top-1."""
    import torch
    from mlflow.tracking import MlflowClient

    from pipelines.prepare import prepare
    from raysys.driver.training import run_training
    from raysys.models import create_model

    shards = workdir / "shards"
    prepare("imagenet", str(write_imagefolder(workdir / "imagefolder")), str(shards))
    model = create_model("resnet18_lpf4", num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    checkpoint = workdir / "checkpoint.pth.tar"  # the original's layout: DataParallel prefixes, percent top-1
    torch.save({"epoch": 2, "arch": "resnet18_lpf4", "best_acc1": torch.tensor(99.0),
                "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict()}, checkpoint)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cfg = load_config("antialiased/scratch-resnet18_lpf4", [
        f"data.path={shards.as_uri()}", "data.resize=32", "train.epochs=3", "train.batch_size=8",
        "train.scheduler_params.step_size=1", "train.recipe=antialiased-resume", f"antialias.weights={checkpoint}",
        f"tracking.uri={uri}", f"checkpoint.storage_path={workdir / 'runs'}", "evaluate.after_training=[]",
    ])
    summary = run_training(cfg, progress=False)
    client = MlflowClient(tracking_uri=uri)
    epochs = metric_history(client, summary["run_id"], "epoch")
    assert [m.value for m in epochs] == [3]  # only the third epoch ran
    metrics = metric_names.flat_view(client.get_run(summary["run_id"]).data.metrics)
    # lr is logged after the epoch's steps: epoch 3 trained at 0.1 * 0.1**2 (step_size 1), then the schedule stepped on
    assert metrics["lr"] == pytest.approx(0.1 * 0.1 ** 3)
    assert metrics["best_test_acc"] == pytest.approx(0.99)
