"""JPEG shards: decoding, the ImageNet crops, and the stream's collator on real prepared shards."""
from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from pipelines.prepare import prepare
from raysys.bench.fixtures import smooth_image, write_imagefolder
from raysys.data.formats.base import IMAGENET_MEAN, IMAGENET_STD
from raysys.data.jpeg import CROPS, decode, decode_batch, random_resized_params
from raysys.data.shards import load_manifest, shard_files
from raysys.data.stream import BatchCollator, image_format
from raysys.errors import DataError


def jpeg_bytes(width: int, height: int, seed: int = 0) -> bytes:
    out = io.BytesIO()
    smooth_image(width, height, np.random.default_rng(seed)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def column(*blobs: bytes) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(list(blobs[:1]), pa.binary()), pa.array(list(blobs[1:]), pa.binary())])


def test_decode_matches_pil_and_keeps_each_size():
    blobs = [jpeg_bytes(60, 40, seed=1), jpeg_bytes(33, 50, seed=2)]
    images = decode(column(*blobs))
    assert [tuple(image.shape) for image in images] == [(3, 40, 60), (3, 50, 33)]
    reference = np.asarray(Image.open(io.BytesIO(blobs[0])).convert("RGB")).transpose(2, 0, 1)
    # Both are libjpeg-turbo; allow for a different IDCT.
    assert np.abs(images[0].numpy().astype(int) - reference.astype(int)).mean() < 2


def test_broken_jpeg_is_a_data_error():
    with pytest.raises(DataError, match="cannot decode a JPEG"):
        decode(column(jpeg_bytes(20, 20), b"not a jpeg"))


def test_random_resized_params_stay_inside_and_follow_the_generator():
    for seed in range(50):
        top, left, h, w = random_resized_params(375, 500, torch.Generator().manual_seed(seed))
        assert 0 <= top and top + h <= 375 and 0 <= left and left + w <= 500
        assert 0.08 * 375 * 500 * 0.9 <= h * w <= 375 * 500
    first = random_resized_params(375, 500, torch.Generator().manual_seed(3))
    assert first == random_resized_params(375, 500, torch.Generator().manual_seed(3))
    # A sliver of an image: the fallback is a centred crop of the allowed aspect ratio.
    assert random_resized_params(10, 1000, torch.Generator().manual_seed(0), scale=(0.99, 1.0)) == (0, 493, 10, 13)


def test_center_crop_is_resize_256_then_center_crop_224():
    import torchvision.transforms.v2 as T

    image = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    expected = T.Compose([T.Resize(256), T.CenterCrop(224)])(image)
    assert torch.equal(CROPS.get("center")(image, 224, torch.Generator()), expected)


def test_decode_batch_is_square_uint8_and_seeded():
    col = column(jpeg_bytes(80, 60, 1), jpeg_bytes(50, 90, 2), jpeg_bytes(64, 64, 3))
    a = decode_batch(col, 32, "random-resized", torch.Generator().manual_seed(5))
    b = decode_batch(col, 32, "random-resized", torch.Generator().manual_seed(5))
    c = decode_batch(col, 32, "random-resized", torch.Generator().manual_seed(6))
    assert a.shape == (3, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert decode_batch(column(), 32, "center", torch.Generator()).shape == (0, 3, 32, 32)


def test_collator_on_prepared_imagenet_shards(tmp_path):
    write_imagefolder(tmp_path / "src", classes=3, train_per_class=4, val_per_class=1, size=(96, 72))
    manifest = prepare("imagenet", str(tmp_path / "src"), str(tmp_path / "shards"))
    assert manifest["image"]["encoding"] == "jpeg"
    table = pq.read_table(shard_files(str(tmp_path / "shards"), load_manifest(str(tmp_path / "shards")), "train")[0])
    with pytest.raises(DataError, match="set data.resize"):
        image_format(manifest, IMAGENET_MEAN, IMAGENET_STD)
    fmt = image_format(manifest, IMAGENET_MEAN, IMAGENET_STD, resize_to=48)
    train = BatchCollator(fmt, "imagenet", seed=0, epoch=0, rank=0)
    assert train.crop == "random-resized"
    batch = train(table)
    assert batch["image"].shape == (12, 3, 48, 48) and batch["image"].dtype == torch.float32
    assert batch["label"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.equal(batch["image"], BatchCollator(fmt, "imagenet", 0, 0, 0)(table)["image"])
    assert not torch.equal(batch["image"], BatchCollator(fmt, "imagenet", 0, 1, 0)(table)["image"])
    evaluation = BatchCollator(fmt, "none", seed=0, epoch=0, rank=0)
    assert evaluation.crop == "center"
    images = evaluation(table)["image"]
    assert torch.equal(images, BatchCollator(fmt, "none", 9, 9, 1)(table)["image"])  # no randomness
    # Normalised with the ImageNet constants: roughly zero-centred, unit-scaled.
    assert -3 < float(images.min()) and float(images.max()) < 3


def test_random_resized_crop_equals_torchvision_resized_crop():
    import torchvision.transforms.v2.functional as TF

    image = decode(column(jpeg_bytes(90, 70, seed=4)))[0]
    out = CROPS.get("random-resized")(image, 32, torch.Generator().manual_seed(2))
    top, left, h, w = random_resized_params(70, 90, torch.Generator().manual_seed(2))
    assert torch.equal(out, TF.resized_crop(image, top, left, h, w, [32, 32], antialias=True))


@pytest.mark.slow
def test_raysys_train_on_jpeg_shards(tmp_path, ray_cluster):
    """prepare imagenet -> JPEG shards -> raysys train (RandomResizedCrop + flip; centre-cropped evaluation)."""
    from raysys.config import load_config
    from raysys.driver.training import run_training
    from tests.test_train_e2e import mlflow_client

    write_imagefolder(tmp_path / "src", classes=3, train_per_class=8, val_per_class=3, size=(80, 60))
    prepare("imagenet", str(tmp_path / "src"), str(tmp_path / "shards"))
    cfg = load_config("cifar-resnet/cifar10-resnet20", [
        "data.name=imagenet", f"data.path={tmp_path / 'shards'}", "data.test_split=val", "data.resize=32",
        "train.augment=imagenet", "train.epochs=1", "train.batch_size=8", "scaling.num_workers=1",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"checkpoint.storage_path={tmp_path / 'runs'}",
    ])
    summary = run_training(cfg, progress=False)
    run = mlflow_client(tmp_path).get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/count"] == 9  # every validation image, counted once
    assert 0.0 <= summary["test_accuracy"] <= 1.0


def test_bench_collate_stages_build_the_collators_batch():
    """``bench data``'s per-step timing (jpeg.stage.*) does the stream's work: the same batch, bit for bit."""
    from collections import defaultdict

    from raysys.bench.jpeg_stages import STAGES, CollateStages
    from raysys.data.augment import AUGMENTS, to_normalized_float

    table = pa.table({"image": pa.array([jpeg_bytes(90, 70, s) for s in range(5)], pa.binary())})
    stages = CollateStages([table.slice(0, 3), table.slice(3)], 32, IMAGENET_MEAN, IMAGENET_STD)
    seconds = defaultdict(float)
    staged = stages.batch(table, torch.Generator().manual_seed(4), seconds)
    generator = torch.Generator().manual_seed(4)
    pixels = AUGMENTS.get("imagenet")(decode_batch(table.column("image"), 32, "random-resized", generator), generator)
    assert torch.equal(staged, to_normalized_float(pixels, IMAGENET_MEAN, IMAGENET_STD))
    assert set(seconds) == set(STAGES)
    assert stages() == 5 and stages() == 5
    assert all(len(stages.cpu_ms[stage]) == 2 for stage in STAGES) and stages.cpu_ms["decode"][0] > 0
