"""Benchmark data in the real on-disk formats: CIFAR-10 pickle batches, JPEG ImageFolders.

The files are what the original datasets look like on disk, so both sides of a
comparison read them with their own loaders (torchvision's ``CIFAR10`` and
``ImageFolder``; raysys's ``prepare`` -> Parquet shards).
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
from PIL import Image

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_FOLDER = "cifar-10-batches-py"


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: ``bytes`` become Python 2 ``str`` (BINSTRING).

    The original CIFAR batches were pickled that way, which is why loaders read
    them with ``encoding="latin1"`` (torchvision: str keys) or ``"bytes"``.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        size = len(obj)
        if size < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([size]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", size) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _write_pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as stream:
        _Py2Pickler(stream, protocol=2).dump(obj)


def cifar_batch(images: np.ndarray, labels: np.ndarray, label_key: bytes = b"labels") -> dict:
    """A batch dict laid out like the originals: uint8 CHW rows, byte-string keys."""
    return {
        b"batch_label": b"raysys batch",
        label_key: [int(label) for label in labels],
        b"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1)),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }


def random_images(n: int, h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def write_cifar10(
    root: Path, train_per_batch: int, test: int, names: Sequence[str] = CIFAR10_NAMES, seed: int = 0
) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``root/cifar-10-batches-py``: data_batch_1..5 of ``train_per_batch`` images, test_batch of ``test``.

    Returns {file name: (images (n, 32, 32, 3) uint8, labels (n,) int64)}.
    """
    folder = Path(root) / CIFAR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    _write_pickle(folder / "batches.meta", {b"label_names": [n.encode() for n in names], b"num_vis": 3072})
    sizes = {f"data_batch_{number}": train_per_batch for number in range(1, 6)}
    sizes["test_batch"] = test
    batches = {}
    for number, (name, count) in enumerate(sizes.items()):
        images = random_images(count, 32, 32, 3, seed=seed * 100 + number)
        labels = np.arange(number, number + count, dtype=np.int64) % len(names)
        _write_pickle(folder / name, cifar_batch(images, labels))
        batches[name] = images, labels
    return batches


def smooth_image(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A photo-like RGB image: smooth colour fields plus mild noise (JPEGs of typical size)."""
    coarse = rng.integers(0, 256, (max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.integers(-12, 13, image.shape, dtype=np.int16)
    return Image.fromarray(np.clip(image + noise, 0, 255).astype(np.uint8))


def write_imagefolder(
    root: Path,
    classes: int = 10,
    train_per_class: int = 10,
    val_per_class: int = 2,
    size: Tuple[int, int] = (500, 375),
    quality: int = 90,
    seed: int = 0,
) -> Path:
    """An ImageNet-style tree ``root/{train,val}/<class>/<n>.JPEG`` of RGB JPEGs.

    Sizes vary by up to 20% around ``size`` (width, height), like ImageNet's.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label in range(classes):
            folder = root / split / f"n{label:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for number in range(count):
                width = int(size[0] * rng.uniform(0.8, 1.2))
                height = int(size[1] * rng.uniform(0.8, 1.2))
                smooth_image(width, height, rng).save(folder / f"{number:05d}.JPEG", format="JPEG", quality=quality)
    return root
