"""CIFAR-10 and CIFAR-100, "python version": pickled dicts of numpy batches.

Each batch holds ``data``, a uint8 (n, 3072) array of 32x32 images with the
three colour planes one after the other (CHW), and a list of labels.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from raysys.data.formats.base import (
    DATASETS,
    DatasetSpec,
    SourceDataset,
    SplitSource,
    array_chunks,
    check_labels,
    locate_folder,
    require_file,
)
from raysys.data.formats.safe_pickle import load_array_pickle
from raysys.errors import DataError

SIDE = 32
ROW_BYTES = 3 * SIDE * SIDE


def _load_dict(path: Path) -> Dict[str, Any]:
    """A batch or meta pickle as a dict with str keys."""
    obj = load_array_pickle(require_file(path))
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected a dict")
    return {
        key.decode("latin-1") if isinstance(key, bytes) else str(key): value
        for key, value in obj.items()
    }


def _get(batch: Dict[str, Any], key: str, path: Path) -> Any:
    if key not in batch:
        raise DataError(f"{path} lacks the key {key!r} (has: {', '.join(sorted(batch))})")
    return batch[key]


def _read_batch(path: Path, label_key: str) -> Tuple[np.ndarray, np.ndarray]:
    """(images (n, 32, 32, 3) uint8, labels (n,) int64) of one batch file."""
    batch = _load_dict(path)
    data = _get(batch, "data", path)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != ROW_BYTES
    ):
        found = (
            f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        )
        raise DataError(f"{path}: 'data' is {found}, expected uint8 (n, {ROW_BYTES})")
    try:
        labels = np.asarray(_get(batch, label_key, path), dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}: {label_key!r} is not a list of integers ({err})") from None
    if labels.shape != (len(data),):
        raise DataError(f"{path} holds {len(data)} images but {labels.size} {label_key!r}")
    images = data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return images, labels


def _read_names(path: Path, key: str) -> List[str]:
    names = _get(_load_dict(path), key, path)
    if not isinstance(names, list):
        raise DataError(f"{path}: {key!r} is a {type(names).__name__}, expected a list of names")
    return [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in names]


def _split(name: str, files: Sequence[Path], label_key: str, num_classes: int) -> SplitSource:
    batches = [_read_batch(path, label_key) for path in files]
    for path, (_, labels) in zip(files, batches):
        check_labels(labels, 0, num_classes - 1, path)
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return SplitSource(name, len(labels), partial(array_chunks, images, labels))


def _dataset(name: str, classes: List[str], splits: List[SplitSource]) -> SourceDataset:
    return SourceDataset(
        name=name,
        source_format="cifar-pickle",
        classes=classes,
        encoding="raw",
        image_shape=(SIDE, SIDE, 3),
        splits=splits,
    )


def read_cifar10(source: Path) -> SourceDataset:
    """``cifar-10-batches-py/`` (or its parent): data_batch_1..5 and test_batch."""
    folder = locate_folder(source, "cifar-10-batches-py", "batches.meta")
    classes = _read_names(folder / "batches.meta", "label_names")
    train = [folder / f"data_batch_{i}" for i in range(1, 6)]
    splits = [
        _split("train", train, "labels", len(classes)),
        _split("test", [folder / "test_batch"], "labels", len(classes)),
    ]
    return _dataset("cifar10", classes, splits)


def read_cifar100(source: Path) -> SourceDataset:
    """``cifar-100-python/`` (or its parent): train and test, with fine labels."""
    folder = locate_folder(source, "cifar-100-python", "meta")
    classes = _read_names(folder / "meta", "fine_label_names")
    splits = [
        _split("train", [folder / "train"], "fine_labels", len(classes)),
        _split("test", [folder / "test"], "fine_labels", len(classes)),
    ]
    return _dataset("cifar100", classes, splits)


DATASETS.add(
    "cifar10",
    DatasetSpec(
        name="cifar10",
        reader=read_cifar10,
        channels=3,
        size=SIDE,
        nominal_size=SIDE,
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        description="CIFAR-10, 32x32 colour images in 10 classes (python pickle batches)",
    ),
    aliases=("cifar-10", "cifar_10"),
)

DATASETS.add(
    "cifar100",
    DatasetSpec(
        name="cifar100",
        reader=read_cifar100,
        channels=3,
        size=SIDE,
        nominal_size=SIDE,
        num_classes=100,
        mean=(0.5071, 0.4867, 0.4408),
        std=(0.2675, 0.2565, 0.2761),
        description="CIFAR-100, 32x32 colour images in 100 fine classes (python pickle batches)",
    ),
    aliases=("cifar-100", "cifar_100"),
)
