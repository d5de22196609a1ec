"""STL-10 binaries: ``stl10_binary/{train,test,unlabeled}_X.bin`` and ``*_y.bin``.

Each image is 3 x 96 x 96 uint8, colour planes one after the other, and each
plane stored column-major: the raw layout per image is (C, W, H). Labels are
one byte each, 1..10.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np

from raysys.data.formats.base import (
    CHUNK_ROWS,
    DATASETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Chunk,
    DatasetSpec,
    SourceDataset,
    SplitSource,
    check_labels,
    locate_folder,
    require_file,
)
from raysys.errors import DataError

SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
CLASS_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
UNLABELED = -1


def _image_count(path: Path) -> int:
    size = require_file(path).stat().st_size
    if size % IMAGE_BYTES:
        raise DataError(
            f"{path} has {size} bytes, not a multiple of {IMAGE_BYTES} (one 3x96x96 image)"
        )
    return size // IMAGE_BYTES


def _read_labels(path: Path, count: int, images_path: Path) -> np.ndarray:
    labels = np.fromfile(require_file(path), dtype=np.uint8).astype(np.int64)
    if len(labels) != count:
        raise DataError(
            f"{images_path.name} holds {count} images but {path.name} holds {len(labels)} labels"
        )
    check_labels(labels, 1, len(CLASS_NAMES), path)
    return labels - 1


def _image_chunks(path: Path, labels: np.ndarray) -> Iterator[Chunk]:
    for start in range(0, len(labels), CHUNK_ROWS):
        n = min(CHUNK_ROWS, len(labels) - start)
        raw = np.fromfile(path, dtype=np.uint8, count=n * IMAGE_BYTES, offset=start * IMAGE_BYTES)
        if raw.size != n * IMAGE_BYTES:
            raise DataError(f"{path} ended early at image {start} (was it changed while reading?)")
        # (n, C, W, H) -> (n, H, W, C)
        yield raw.reshape(n, 3, SIDE, SIDE).transpose(0, 3, 2, 1), labels[start : start + n]


def _split(folder: Path, name: str, labels_file: Optional[str]) -> SplitSource:
    images_path = folder / f"{name}_X.bin"
    count = _image_count(images_path)
    if labels_file is None:
        labels = np.full(count, UNLABELED, dtype=np.int64)
    else:
        labels = _read_labels(folder / labels_file, count, images_path)
    return SplitSource(name, count, partial(_image_chunks, images_path, labels))


def _class_names(folder: Path) -> List[str]:
    path = folder / "class_names.txt"
    if not path.is_file():
        return list(CLASS_NAMES)
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) != len(CLASS_NAMES):
        raise DataError(f"{path} lists {len(names)} class names, expected {len(CLASS_NAMES)}")
    return names


def read_stl10(source: Path, *, include_unlabeled: bool = False) -> SourceDataset:
    """``stl10_binary/`` (or its parent); the unlabeled split only on request."""
    folder = locate_folder(source, "stl10_binary", "train_X.bin")
    splits = [_split(folder, "train", "train_y.bin"), _split(folder, "test", "test_y.bin")]
    if include_unlabeled:
        splits.append(_split(folder, "unlabeled", None))
    return SourceDataset(
        name="stl10",
        source_format="stl10-binary",
        classes=_class_names(folder),
        encoding="raw",
        image_shape=(SIDE, SIDE, 3),
        splits=splits,
        options={"include_unlabeled": include_unlabeled},
    )


DATASETS.add(
    "stl10",
    DatasetSpec(
        name="stl10",
        reader=read_stl10,
        channels=3,
        size=SIDE,
        nominal_size=SIDE,
        num_classes=len(CLASS_NAMES),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        description="STL-10, 96x96 colour images in 10 classes (+100k unlabeled; binary files)",
    ),
    aliases=("stl-10", "stl_10"),
)
