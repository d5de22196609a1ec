"""Readers of the original dataset formats, end to end through ``prepare``.

Each test writes a tiny dataset in the real on-disk format, prepares it and
reads the Parquet shards back.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from pipelines.prepare import prepare
from raysys.data.formats import DATASETS, get_dataset
from raysys.data.shards import decode_raw, load_manifest, shard_files
from raysys.errors import ConfigError, DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def rng_images(n: int, h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def read_split(out: Path, split: str) -> Tuple[object, np.ndarray]:
    """(images, labels) of a prepared split: uint8 (n,H,W,C) for raw, else a list of bytes."""
    manifest = load_manifest(str(out))
    table = pa.concat_tables(pq.read_table(path) for path in shard_files(str(out), manifest, split))
    assert table.column("index").to_pylist() == list(range(table.num_rows))
    image = manifest["image"]
    if image["encoding"] == "raw":
        images = decode_raw(
            table.column("image"), (image["height"], image["width"], image["channels"])
        )
    else:
        images = table.column("image").to_pylist()
    return images, table.column("label").to_numpy()


# ---- registry ------------------------------------------------------------------


def test_registered_datasets():
    assert DATASETS.names() == sorted(
        [
            "mnist",
            "fashion-mnist",
            "cifar10",
            "cifar100",
            "stl10",
            "imagenet",
            "imagenet16",
            "imagenet32",
            "imagenet64",
            "stir-aerial",
            "stir-emoji",
            "stir-mnist",
            "stir-trafficsign",
        ]
    )
    assert get_dataset("cifar-10") is get_dataset("cifar10")
    cifar = get_dataset("cifar10")
    assert (cifar.channels, cifar.size, cifar.nominal_size, cifar.num_classes) == (3, 32, 32, 10)
    assert cifar.mean == (0.4914, 0.4822, 0.4465) and cifar.std == (0.2470, 0.2435, 0.2616)
    imagenet = get_dataset("imagenet")
    assert imagenet.size is None and imagenet.nominal_size == 224 and imagenet.num_classes == 1000
    assert get_dataset("imagenet64").size == 64
    assert get_dataset("fashion-mnist").mean == (0.2860,) and get_dataset("mnist").std == (0.3081,)
    assert get_dataset("stl10").mean == (0.485, 0.456, 0.406)


def test_unknown_dataset_suggests():
    with pytest.raises(ConfigError, match="did you mean: cifar10"):
        get_dataset("cifar1O")


def test_option_that_does_not_apply(tmp_path):
    with pytest.raises(ConfigError, match="option 'resize' does not apply to dataset cifar10"):
        prepare("cifar10", str(tmp_path), str(tmp_path / "out"), resize=64)


def test_missing_source_dir(tmp_path):
    with pytest.raises(DataError, match=f"source directory {tmp_path / 'nope'} does not exist"):
        prepare("mnist", str(tmp_path / "nope"), str(tmp_path / "out"))


def test_existing_output_is_refused_before_reading(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text("{}")
    (tmp_path / "src").mkdir()  # no IDX files: reading would fail differently
    with pytest.raises(DataError, match="already holds prepared shards; pass --overwrite"):
        prepare("mnist", str(tmp_path / "src"), str(tmp_path / "out"))


# ---- IDX (MNIST, Fashion-MNIST) --------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int = 0) -> bytes:
    header = struct.pack(">I", magic or 0x0800 | array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write_idx_file(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def write_idx(
    folder: Path, gz: bool = True, counts=(("train", 7), ("t10k", 3))
) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for seed, (prefix, count) in enumerate(counts):
        images = rng_images(count, 28, 28, 1, seed)[..., 0]
        labels = np.arange(count) % 10
        suffix = ".gz" if gz else ""
        write_idx_file(folder / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images))
        write_idx_file(folder / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels))
        written[prefix] = images, labels
    return written


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    written = write_idx(tmp_path / "src", gz=gz)
    manifest = prepare("mnist", str(tmp_path / "src"), str(tmp_path / "out"), rows_per_shard=4)
    assert manifest["classes"] == [str(digit) for digit in range(10)]
    assert manifest["source_format"] == "idx"
    assert manifest["image"] == {"encoding": "raw", "height": 28, "width": 28, "channels": 1}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = read_split(tmp_path / "out", split)
        np.testing.assert_array_equal(images[..., 0], written[prefix][0])
        np.testing.assert_array_equal(labels, written[prefix][1])


def test_idx_class_names_come_from_the_dataset_name(tmp_path):
    write_idx(tmp_path / "src")
    manifest = prepare("fashion-mnist", str(tmp_path / "src"), str(tmp_path / "out"))
    assert manifest["classes"] == FASHION_CLASSES and manifest["dataset"] == "fashion-mnist"


def test_real_fashion_mnist(tmp_path):
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"Fashion-MNIST not installed at {FASHION_MNIST_DIR} (Debian package dataset-fashion-mnist)"
        )
    manifest = prepare("fashion-mnist", str(FASHION_MNIST_DIR), str(tmp_path / "fm"))
    assert {name: split["count"] for name, split in manifest["splits"].items()} == {
        "train": 60000,
        "test": 10000,
    }
    assert manifest["image"] == {"encoding": "raw", "height": 28, "width": 28, "channels": 1}
    assert manifest["num_classes"] == 10 and manifest["classes"] == FASHION_CLASSES
    assert manifest["splits"]["train"]["mean"][0] == pytest.approx(0.2860, abs=1e-4)
    assert manifest["splits"]["train"]["std"][0] == pytest.approx(0.3530, abs=1e-4)
    images, labels = read_split(tmp_path / "fm", "test")
    assert images.shape == (10000, 28, 28, 1)
    assert np.bincount(labels).tolist() == [1000] * 10


def corrupt_idx(folder: Path, how: str) -> str:
    """Damage the written IDX files; returns the expected error text."""
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    images = folder / "train-images-idx3-ubyte.gz"
    if how == "missing":
        labels.unlink()
        return f"missing file {labels}"
    if how == "truncated labels":
        labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-1]))
        return f"truncated IDX file {labels}: 3 labels needs 3 bytes, found 2"
    if how == "truncated images":
        images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-100]))
        return f"truncated IDX file {images}: images 0..6 needs 5488 bytes, found 5388"
    if how == "truncated gzip":
        images.write_bytes(images.read_bytes()[:-200])
        return f"corrupt gzip file {images}"
    if how == "bad magic":
        images.write_bytes(
            gzip.compress(b"\x00\x00\x08\x01" + gzip.decompress(images.read_bytes())[4:])
        )
        return f"bad magic number in {images}: 0x00000801, expected 0x00000803"
    if how == "count mismatch":
        write_idx_file(labels, idx_bytes(np.zeros(4)))
        return (
            "t10k-images-idx3-ubyte.gz holds 3 images but t10k-labels-idx1-ubyte.gz holds 4 labels"
        )
    if how == "label range":
        write_idx_file(labels, idx_bytes(np.array([1, 2, 10])))
        return "labels range 1..10, expected 0..9"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "missing",
        "truncated labels",
        "truncated images",
        "truncated gzip",
        "bad magic",
        "count mismatch",
        "label range",
    ],
)
def test_idx_errors(tmp_path, how):
    write_idx(tmp_path / "src")
    expected = corrupt_idx(tmp_path / "src", how)
    with pytest.raises(DataError) as err:
        prepare("mnist", str(tmp_path / "src"), str(tmp_path / "out"))
    assert expected in str(err.value)
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_raw_idx_of_wrong_size(tmp_path):
    write_idx(tmp_path / "src", gz=False)
    path = tmp_path / "src" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataError, match="has 2369 bytes, expected 2368 for 3 images of 28x28"):
        prepare("mnist", str(tmp_path / "src"), str(tmp_path / "out"))


# ---- CIFAR ---------------------------------------------------------------------


def write_pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as stream:
        pickle.dump(obj, stream, protocol=2)


def cifar_batch(images: np.ndarray, labels: np.ndarray, label_key: bytes) -> dict:
    """A batch dict laid out like the originals: CHW rows, byte-string keys."""
    return {
        b"batch_label": b"testing batch",
        label_key: [int(label) for label in labels],
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }


def write_cifar10(root: Path, names: Sequence[str]) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    write_pickle(
        folder / "batches.meta", {b"label_names": [n.encode() for n in names], b"num_vis": 3072}
    )
    batches = {}
    for number in range(1, 6):
        images, labels = rng_images(3, 32, 32, 3, seed=number), np.arange(number, number + 3) % len(
            names
        )
        write_pickle(folder / f"data_batch_{number}", cifar_batch(images, labels, b"labels"))
        batches[f"data_batch_{number}"] = images, labels
    images, labels = rng_images(4, 32, 32, 3, seed=9), np.array([3, 2, 1, 0])
    write_pickle(folder / "test_batch", cifar_batch(images, labels, b"labels"))
    batches["test_batch"] = images, labels
    return batches


CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def test_cifar10_round_trip_from_parent_folder(tmp_path):
    batches = write_cifar10(tmp_path / "src", CIFAR10_NAMES)
    manifest = prepare("cifar10", str(tmp_path / "src"), str(tmp_path / "out"))
    assert manifest["classes"] == CIFAR10_NAMES and manifest["source_format"] == "cifar-pickle"
    images, labels = read_split(tmp_path / "out", "train")
    train = [batches[f"data_batch_{n}"] for n in range(1, 6)]
    np.testing.assert_array_equal(images, np.concatenate([b[0] for b in train]))
    np.testing.assert_array_equal(labels, np.concatenate([b[1] for b in train]))
    images, labels = read_split(tmp_path / "out", "test")
    np.testing.assert_array_equal(images, batches["test_batch"][0])
    np.testing.assert_array_equal(labels, [3, 2, 1, 0])


def test_cifar_pixel_order_is_hwc(tmp_path):
    batches = write_cifar10(tmp_path / "src", CIFAR10_NAMES)
    images, _ = read_split_after(tmp_path, "cifar10", "test")
    row = cifar_batch(*batches["test_batch"], b"labels")[b"data"][0]
    # The first 1024 values of a row are the red plane, row by row.
    assert (
        images[0, 0, 1, 0] == row[1]
        and images[0, 1, 0, 0] == row[32]
        and images[0, 0, 0, 2] == row[2048]
    )


def read_split_after(tmp_path: Path, dataset: str, split: str):
    prepare(dataset, str(tmp_path / "src"), str(tmp_path / "out"))
    return read_split(tmp_path / "out", split)


def test_cifar100_round_trip_uses_fine_labels(tmp_path):
    folder = tmp_path / "src" / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = [f"fine_{i}" for i in range(100)]
    write_pickle(
        folder / "meta",
        {b"fine_label_names": [n.encode() for n in fine], b"coarse_label_names": [b"c"] * 20},
    )
    data = {}
    for seed, split in enumerate(("train", "test")):
        images, labels = rng_images(5, 32, 32, 3, seed), np.array([0, 99, 42, 7, 7])
        batch = cifar_batch(images, labels, b"fine_labels")
        batch[b"coarse_labels"] = [19] * 5
        write_pickle(folder / split, batch)
        data[split] = images, labels
    manifest = prepare("cifar100", str(folder), str(tmp_path / "out"))
    assert manifest["classes"] == fine and manifest["num_classes"] == 100
    for split in ("train", "test"):
        images, labels = read_split(tmp_path / "out", split)
        np.testing.assert_array_equal(images, data[split][0])
        np.testing.assert_array_equal(labels, data[split][1])


def test_cifar_pickles_of_numpy_1_load(tmp_path):
    """numpy 1.x pickles name ``numpy.core.multiarray``; numpy 2.x ``numpy._core``."""
    batches = write_cifar10(tmp_path / "src", CIFAR10_NAMES)
    path = tmp_path / "src" / "cifar-10-batches-py" / "test_batch"
    old_style = path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old_style
    path.write_bytes(old_style)
    images, _ = read_split_after(tmp_path, "cifar10", "test")
    np.testing.assert_array_equal(images, batches["test_batch"][0])


class Exploit:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    write_cifar10(tmp_path / "src", CIFAR10_NAMES)
    marker = tmp_path / "pwned"
    batch = tmp_path / "src" / "cifar-10-batches-py" / "data_batch_2"
    write_pickle(batch, {b"data": Exploit(marker), b"labels": [0]})
    with pytest.raises(
        DataError, match=f"refusing to load {batch}: the pickle references posix.system"
    ):
        prepare("cifar10", str(tmp_path / "src"), str(tmp_path / "out"))
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "data_batch_3").unlink(), "missing file .*data_batch_3"),
        (
            lambda f: (f / "test_batch").write_bytes(b"\x80\x02garbage"),
            "corrupt pickle .*test_batch",
        ),
        (
            lambda f: write_pickle(f / "test_batch", [1, 2]),
            "test_batch holds a list, expected a dict",
        ),
        (
            lambda f: write_pickle(
                f / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}
            ),
            "test_batch holds 2 images but 1 'labels'",
        ),
        (
            lambda f: write_pickle(
                f / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}
            ),
            r"'data' is uint8 \(2, 100\), expected uint8 \(n, 3072\)",
        ),
        (
            lambda f: write_pickle(f / "test_batch", {b"labels": [1, 2]}),
            "test_batch lacks the key 'data'",
        ),
        (lambda f: (f / "batches.meta").unlink(), "missing file batches.meta in"),
    ],
)
def test_cifar_errors(tmp_path, damage, message):
    write_cifar10(tmp_path / "src", CIFAR10_NAMES)
    damage(tmp_path / "src" / "cifar-10-batches-py")
    with pytest.raises(DataError, match=message):
        prepare("cifar10", str(tmp_path / "src"), str(tmp_path / "out"))


# ---- STL-10 --------------------------------------------------------------------


def stl_bytes(images: np.ndarray) -> bytes:
    """Images (n, H, W, C) in STL-10's layout: (n, C, W, H)."""
    return images.transpose(0, 3, 2, 1).tobytes()


def write_stl10(root: Path, unlabeled: int = 0) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    (folder / "class_names.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    data = {}
    for seed, (split, count) in enumerate((("train", 3), ("test", 2))):
        images, labels = rng_images(count, 96, 96, 3, seed), np.arange(count) * 4 % 10
        (folder / f"{split}_X.bin").write_bytes(stl_bytes(images))
        (folder / f"{split}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
        data[split] = images, labels
    if unlabeled:
        images = rng_images(unlabeled, 96, 96, 3, seed=7)
        (folder / "unlabeled_X.bin").write_bytes(stl_bytes(images))
        data["unlabeled"] = images, np.full(unlabeled, -1)
    return data


def test_stl10_round_trip(tmp_path):
    data = write_stl10(tmp_path / "src", unlabeled=2)
    manifest = prepare("stl10", str(tmp_path / "src"), str(tmp_path / "out"))
    assert list(manifest["splits"]) == ["train", "test"]
    assert manifest["classes"] == [f"class{i}" for i in range(10)]
    for split in ("train", "test"):
        images, labels = read_split(tmp_path / "out", split)
        np.testing.assert_array_equal(images, data[split][0])
        np.testing.assert_array_equal(labels, data[split][1])


def test_stl10_orientation(tmp_path):
    """A bright pixel in the top-right corner stays there (H and W are not swapped)."""
    folder = tmp_path / "src" / "stl10_binary"
    folder.mkdir(parents=True)
    raw = np.zeros((1, 3, 96, 96), np.uint8)  # (n, C, W, H)
    raw[0, 0, 95, 0] = 255  # red, x = 95 (right), y = 0 (top)
    for split in ("train", "test"):
        (folder / f"{split}_X.bin").write_bytes(raw.tobytes())
        (folder / f"{split}_y.bin").write_bytes(b"\x01")
    images, labels = read_split_after(tmp_path, "stl10", "train")
    assert images.shape == (1, 96, 96, 3) and labels.tolist() == [0]
    assert images[0, 0, 95, 0] == 255 and images.sum() == 255


def test_stl10_unlabeled_on_request(tmp_path):
    data = write_stl10(tmp_path / "src", unlabeled=2)
    manifest = prepare(
        "stl10", str(tmp_path / "src"), str(tmp_path / "out"), include_unlabeled=True
    )
    assert list(manifest["splits"]) == ["train", "test", "unlabeled"]
    assert manifest["options"] == {"include_unlabeled": True}
    images, labels = read_split(tmp_path / "out", "unlabeled")
    np.testing.assert_array_equal(images, data["unlabeled"][0])
    assert labels.tolist() == [-1, -1]


def test_stl10_file_of_wrong_size(tmp_path):
    write_stl10(tmp_path / "src")
    path = tmp_path / "src" / "stl10_binary" / "test_X.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=f"{path} has 55291 bytes, not a multiple of 27648"):
        prepare("stl10", str(tmp_path / "src"), str(tmp_path / "out"))


def test_stl10_label_count_mismatch(tmp_path):
    write_stl10(tmp_path / "src")
    (tmp_path / "src" / "stl10_binary" / "train_y.bin").write_bytes(b"\x01\x02")
    with pytest.raises(
        DataError, match="train_X.bin holds 3 images but train_y.bin holds 2 labels"
    ):
        prepare("stl10", str(tmp_path / "src"), str(tmp_path / "out"))


# ---- ImageFolder ---------------------------------------------------------------


def encoded(size: Tuple[int, int], fmt: str = "JPEG", mode: str = "RGB", seed: int = 0) -> bytes:
    width, height = size
    pixels = rng_images(1, height, width, 3, seed)[0]
    image = Image.fromarray(pixels).convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def write_tree(root: Path, files: Dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


IMAGEFOLDER = {
    "train/cat/b.JPEG": encoded((40, 30), seed=1),
    "train/cat/a.jpg": encoded((20, 50), seed=2),
    "train/dog/c.png": encoded((24, 24), fmt="PNG", seed=3),
    "train/dog/d.jpeg": encoded((12, 10), mode="L", seed=4),
    "train/dog/notes.txt": b"ignored",
    "train/dog/._c.png": b"macOS resource fork, ignored",
    "val/dog/e.JPEG": encoded((33, 35), seed=5),
}


def decoded_sizes(blobs: List[bytes]) -> List[Tuple[int, int]]:
    sizes = []
    for blob in blobs:
        with Image.open(io.BytesIO(blob)) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            sizes.append(image.size)
    return sizes


def same_pixels(stored: bytes, original: bytes) -> bool:
    from torchvision.io import ImageReadMode, decode_jpeg

    def pixels(blob: bytes):
        return decode_jpeg(torch.frombuffer(bytearray(blob), dtype=torch.uint8), mode=ImageReadMode.RGB)

    return torch.equal(pixels(stored), pixels(original))


def has_restart_markers(blob: bytes) -> bool:
    """A DRI marker (FF DD) with an interval of one MCU, before the scan."""
    header = blob[: blob.index(b"\xff\xda")]
    at = header.find(b"\xff\xdd")
    return at >= 0 and header[at + 4 : at + 6] == b"\x00\x01"


@pytest.mark.parametrize("restarts", [True, False])
def test_imagefolder_round_trip(tmp_path, monkeypatch, restarts):
    """RGB JPEGs keep their pixels: rewritten with a restart marker per MCU, or (RAYSYS_JPEG_WINDOW=0) as they are."""
    from raysys.data import jpeg_window

    if restarts and not jpeg_window.available():
        pytest.skip("_raysys_jpeg_window was not built")
    if not restarts:
        monkeypatch.setenv(jpeg_window.ENV, "0")
    write_tree(tmp_path / "src", IMAGEFOLDER)
    manifest = prepare("imagenet", str(tmp_path / "src"), str(tmp_path / "out"))
    assert manifest["classes"] == ["cat", "dog"] and manifest["source_format"] == "imagefolder"
    assert manifest["image"] == {"encoding": "jpeg", "height": None, "width": None, "channels": 3}
    assert manifest["options"] == {"resize": 0, "jpeg_restart_markers": restarts}
    blobs, labels = read_split(tmp_path / "out", "train")
    assert labels.tolist() == [0, 0, 1, 1]
    assert decoded_sizes(blobs) == [(20, 50), (40, 30), (24, 24), (12, 10)]
    assert [has_restart_markers(blob) for blob in blobs] == [restarts] * 4
    originals = [IMAGEFOLDER["train/cat/a.jpg"], IMAGEFOLDER["train/cat/b.JPEG"]]
    assert all(same_pixels(blob, original) for blob, original in zip(blobs, originals))
    assert (blobs[:2] == originals) == (not restarts)
    val, labels = read_split(tmp_path / "out", "val")
    assert labels.tolist() == [1] and same_pixels(val[0], IMAGEFOLDER["val/dog/e.JPEG"])


def test_imagefolder_resize_short_side(tmp_path):
    write_tree(tmp_path / "src", IMAGEFOLDER)
    manifest = prepare("imagenet", str(tmp_path / "src"), str(tmp_path / "out"), resize=16)
    assert manifest["options"]["resize"] == 16
    blobs, _ = read_split(tmp_path / "out", "train")
    assert decoded_sizes(blobs) == [(16, 40), (21, 16), (16, 16), (12, 10)]


def test_imagefolder_custom_split_folders(tmp_path):
    from raysys.data.formats.imagefolder import read_imagefolder

    write_tree(
        tmp_path,
        {
            "training/a/x.png": encoded((8, 8), fmt="PNG"),
            "validation/b/y.png": encoded((8, 8), fmt="PNG"),
        },
    )
    dataset = read_imagefolder(tmp_path, split_dirs={"train": "training", "val": "validation"})
    assert dataset.classes == ["a", "b"]
    assert [(split.name, split.count) for split in dataset.splits] == [("train", 1), ("val", 1)]


@pytest.mark.parametrize(
    "files, message",
    [
        (
            {"train/cat/bad.JPEG": b"not a jpeg at all"},
            "unreadable image {root}/train/cat/bad.JPEG",
        ),
        (
            {"train/cat/cut.JPEG": encoded((64, 64))[:300]},
            "unreadable image {root}/train/cat/cut.JPEG",
        ),
        ({"train/.keep": b""}, "empty ImageFolder split {root}/train: no class folders"),
        ({"other/cat/a.jpg": encoded((8, 8))}, r"no split folder \(train/, val/\) in {root}"),
        (
            {"train/cat/a.jpg": encoded((8, 8)), "train/dog/x.txt": b""},
            "class folder {root}/train/dog holds no images",
        ),
        ({"val/a.JPEG": encoded((8, 8))}, "{root}/val holds images directly"),
    ],
)
def test_imagefolder_errors(tmp_path, files, message):
    root = tmp_path / "src"
    write_tree(root, files)
    with pytest.raises(DataError, match=message.format(root=root)):
        prepare("imagenet", str(root), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# ---- downsampled ImageNet --------------------------------------------------------


def write_npz(path: Path, images: np.ndarray, labels: np.ndarray, compressed: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save = np.savez_compressed if compressed else np.savez
    save(path, data=images.transpose(0, 3, 1, 2).reshape(len(images), -1), labels=labels + 1)


def write_npz_dataset(root: Path, side: int = 16) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    data = {}
    parts = []
    for number in (1, 2):
        images, labels = rng_images(3, side, side, 3, number), np.array([0, 999, number])
        write_npz(
            root / f"Imagenet{side}_train_npz" / f"train_data_batch_{number}.npz",
            images,
            labels,
            compressed=True,
        )
        parts.append((images, labels))
    data["train"] = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    data["val"] = rng_images(2, side, side, 3, 9), np.array([5, 6])
    write_npz(root / f"Imagenet{side}_val_npz" / "val_data.npz", *data["val"])
    return data


def test_downsampled_npz_round_trip(tmp_path, monkeypatch):
    import raysys.data.formats.downsampled_imagenet as downsampled

    monkeypatch.setattr(downsampled, "CHUNK_ROWS", 2)  # several chunks per batch file
    data = write_npz_dataset(tmp_path / "src")
    manifest = prepare("imagenet16", str(tmp_path / "src"), str(tmp_path / "out"))
    assert manifest["source_format"] == "imagenet-npz" and manifest["num_classes"] == 1000
    assert manifest["classes"][:2] == ["1", "2"]
    assert manifest["image"] == {"encoding": "raw", "height": 16, "width": 16, "channels": 3}
    for split in ("train", "val"):
        images, labels = read_split(tmp_path / "out", split)
        np.testing.assert_array_equal(images, data[split][0])
        np.testing.assert_array_equal(labels, data[split][1])


def test_downsampled_side_must_match_the_name(tmp_path):
    write_npz_dataset(tmp_path / "src", side=16)
    with pytest.raises(
        DataError, match=r"holds 16x16 images but imagenet32 is 32x32 \(it fits imagenet16\)"
    ):
        prepare("imagenet32", str(tmp_path / "src"), str(tmp_path / "out"))


def test_downsampled_missing_batch(tmp_path):
    write_npz_dataset(tmp_path / "src")
    os.rename(
        tmp_path / "src" / "Imagenet16_train_npz" / "train_data_batch_2.npz",
        tmp_path / "src" / "Imagenet16_train_npz" / "train_data_batch_3.npz",
    )
    with pytest.raises(
        DataError, match=r"missing file train_data_batch_2.npz \(found batches \[1, 3\]"
    ):
        prepare("imagenet16", str(tmp_path / "src"), str(tmp_path / "out"))


def test_downsampled_npz_with_objects_is_refused(tmp_path):
    path = tmp_path / "src" / "val_data.npz"
    path.parent.mkdir()
    np.savez(path, data=np.array([Exploit(tmp_path / "pwned")], dtype=object), labels=np.array([1]))
    with pytest.raises(DataError, match="holds Python objects; refusing to unpickle it"):
        prepare("imagenet16", str(tmp_path / "src"), str(tmp_path / "out"))
    assert not (tmp_path / "pwned").exists()


def test_downsampled_nothing_found(tmp_path):
    with pytest.raises(DataError, match="no downsampled ImageNet in"):
        prepare("imagenet32", str(tmp_path), str(tmp_path / "out"))


def test_downsampled_png_folders(tmp_path):
    expected = {"train": [], "val": []}
    files = {}
    for split in ("train", "val"):
        for number, name in enumerate(["1", "2", "10"]):
            pixels = rng_images(1, 32, 32, 3, seed=number + 10 * len(files))[0]
            out = io.BytesIO()
            Image.fromarray(pixels).save(out, format="PNG")
            files[f"{split}/{name}/img.png"] = out.getvalue()
            expected[split].append(pixels)
    write_tree(tmp_path / "src", files)
    manifest = prepare("imagenet32", str(tmp_path / "src"), str(tmp_path / "out"))
    assert manifest["source_format"] == "imagenet-folder"
    assert manifest["classes"] == ["1", "2", "10"]  # numeric order
    for split in ("train", "val"):
        images, labels = read_split(tmp_path / "out", split)
        np.testing.assert_array_equal(images, np.stack(expected[split]))
        assert labels.tolist() == [0, 1, 2]


def test_downsampled_png_of_other_size(tmp_path):
    write_tree(
        tmp_path / "src",
        {
            "train/a/x.png": encoded((32, 32), fmt="PNG"),
            "train/a/y.png": encoded((32, 31), fmt="PNG"),
        },
    )
    with pytest.raises(DataError, match="y.png is 32x31, expected 32x32 for imagenet32"):
        prepare("imagenet32", str(tmp_path / "src"), str(tmp_path / "out"))
