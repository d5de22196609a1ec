"""STIR MNIST: digits resized to 17-64 pixels on a 64x64 canvas, softened and thresholded.

Follows the original procedure (``data/gen_mnist.py``) from any MNIST-format
IDX folder (``train-*`` and ``t10k-*`` files; Fashion-MNIST works as a
stand-in). Per class, the images are shuffled with ``RandomState(seed)``;
train uses instances 0..m-1 and validation m..2m-1 of the train file, test
uses 0..m-1 of the t10k file (m = 50 in the original). Each image is:

1. resized bicubically to s x s, as ``skimage.transform.resize(order=3)``
   does it (Gaussian anti-aliasing with sigma (28/s - 1)/2 when shrinking,
   mirror edges, output clipped to the input's range);
2. zero-padded to 64x64 at a random position;
3. blurred with a Gaussian of sigma (7/8) * s / 28 (nearest edges, truncate 4);
4. mapped through 2/pi * atan(0.02 (x - 128)), then min-max scaled to 0..255
   and truncated to uint8.

Positions use ``RandomState(seed)`` drawn in the original's order (class,
instance, scale from 64 down, split); ``--seed 42`` reproduces the original's.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
from scipy import ndimage

from pipelines.stir.sources import register_source
from pipelines.stir.writer import StirBuilder, metadata
from raysys.data.formats.base import require_dir
from raysys.data.formats.idx import MNIST_CLASSES, read_idx
from raysys.data.formats.stir_npz import CANVAS, SCALES, SPLITS, StirArrays
from raysys.errors import DataError

INSTANCES = 50
SOURCE_SIZE = 28


@lru_cache(maxsize=2)
def _load(folder: Path) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """{"train": (images (N, 28, 28), labels), "test": ...} from the IDX files in ``folder`` (cached)."""
    dataset = read_idx(require_dir(folder, "IDX folder"), name="stir-mnist-source", classes=MNIST_CLASSES)
    arrays = {}
    for split in dataset.splits:
        images, labels = zip(*split.chunks())
        arrays[split.name] = (np.concatenate(images)[..., 0], np.concatenate(labels))
    return arrays


def resize_bicubic(image: np.ndarray, size: int) -> np.ndarray:
    """float64 (size, size) like ``skimage.transform.resize(image, (size, size), order=3, preserve_range=True)``."""
    source = image.astype(np.float64)
    factor = source.shape[0] / size
    smoothed = ndimage.gaussian_filter(source, (factor - 1) / 2, mode="mirror") if factor > 1 else source
    out = ndimage.zoom(smoothed, 1 / factor, order=3, mode="mirror", grid_mode=True)
    return np.clip(out, source.min(), source.max())


def stir_digit(image: np.ndarray, scale: int, left: int, top: int) -> np.ndarray:
    """One STIR MNIST image: the digit at ``scale`` placed at (left, top), softened, uint8 (64, 64)."""
    resized = resize_bicubic(image, scale)
    canvas = np.zeros((CANVAS, CANVAS), np.float64)
    canvas[top : top + scale, left : left + scale] = resized
    blurred = ndimage.gaussian_filter(canvas, 7.0 / 8.0 * scale / SOURCE_SIZE, mode="nearest", truncate=4.0)
    curved = 2 / np.pi * np.arctan(0.02 * (blurred - 128))
    low, high = curved.min(), curved.max()
    return (255.0 * (curved - low) / (high - low)).astype(np.uint8)


def _instances_of(labels: np.ndarray, digit: int, needed: int, seed: int, where: str) -> np.ndarray:
    """Row indices of ``digit`` in the original's shuffled order."""
    rows = np.flatnonzero(labels == digit)
    if len(rows) < needed:
        raise DataError(f"{where} holds {len(rows)} images of class {digit}, STIR needs {needed}")
    return rows[np.random.RandomState(seed).permutation(len(rows))]


@register_source("mnist", needs_source=True, instances=INSTANCES,
                 description="MNIST-format IDX folder (train-* and t10k-* files)")
def build_mnist(source: Optional[Path], seed: int, instances: Optional[int]) -> StirArrays:
    if source is None:
        raise DataError("STIR mnist needs --source: a folder with MNIST-format IDX files")
    m = INSTANCES if instances is None else instances
    if m < 1:
        raise DataError(f"--instances must be >= 1, got {m}")
    data = _load(Path(source).resolve())
    (train_images, train_labels), (test_images, test_labels) = data["train"], data["test"]
    if train_images.shape[1:] != (SOURCE_SIZE, SOURCE_SIZE):
        raise DataError(f"STIR mnist needs 28x28 images, {source} holds {train_images.shape[1:]}")
    rng = np.random.RandomState(seed)
    builder = StirBuilder(MNIST_CLASSES, m)
    for digit in range(len(MNIST_CLASSES)):
        train_rows = _instances_of(train_labels, digit, 2 * m, seed, f"{source} (train)")
        test_rows = _instances_of(test_labels, digit, m, seed, f"{source} (t10k)")
        # split -> (images, row of instance i)
        sources = [
            (train_images, lambda i: train_rows[i]),
            (train_images, lambda i: train_rows[i + m]),
            (test_images, lambda i: test_rows[i]),
        ]
        for i in range(m):
            for scale in SCALES:
                for split in range(len(SPLITS)):
                    left, top = (int(v) for v in rng.randint(0, CANVAS - scale + 1, 2))
                    images, row = sources[split]
                    builder.put(split, scale, digit, i, stir_digit(images[row(i)], scale, left, top), left, top)
    return builder.arrays(metadata(
        "MNIST",
        f"Ten classes of an MNIST-format dataset resized to object sizes 17 to 64 pixels at a random "
        f"position inside a 64x64 image, blurred and contrast-curved; {m} instances per class and split.",
        "CC BY 4.0, derived from the IDX source dataset (MNIST: Y. LeCun, C. Cortes and C. Burges)",
    ))
