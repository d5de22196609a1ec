"""Shared types of the dataset readers: what a dataset is, and what a reader yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from raysys.errors import DataError
from raysys.registry import Registry

ImageChunk = Union[np.ndarray, List[bytes]]
Chunk = Tuple[ImageChunk, np.ndarray]

# Rows per chunk a reader yields: big enough to vectorize, small enough for memory.
CHUNK_ROWS = 4096

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SplitSource:
    """One split of a source dataset: its size, and a way to stream it in chunks."""

    name: str
    count: int
    # Each call starts a fresh pass: yields (images, labels). Images are uint8
    # (n, H, W, C) for encoding "raw", or a list of encoded bytes for "jpeg";
    # labels are int64 (n,).
    chunks: Callable[[], Iterator[Chunk]]
    # Optional extra int64 columns, one value per row of the split in order
    # (e.g. STIR's ``scale``); written beside image/label/index, which the
    # generic stream reads alone.
    columns: Dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class SourceDataset:
    """A dataset as found on disk, ready to be written as shards."""

    name: str
    source_format: str
    classes: List[str]
    encoding: str  # "raw" or "jpeg"
    image_shape: Optional[Tuple[int, int, int]]  # (H, W, C) for raw; None if variable
    splits: List[SplitSource]
    # Reader options that shaped the data (e.g. resize); recorded in the manifest.
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: how to read its original files, and its constants."""

    name: str
    reader: Callable[..., SourceDataset]  # reader(source: Path, **options)
    channels: int
    size: Optional[int]  # native side length; None when images vary in size
    nominal_size: int  # side length for building a model without shards
    num_classes: int
    mean: Tuple[float, ...]  # per-channel normalization constants, 0-1 scale
    std: Tuple[float, ...]
    description: str


DATASETS: "Registry[DatasetSpec]" = Registry("dataset", config_key="data.name")


def require_dir(path: Path, what: str = "source directory") -> Path:
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise DataError(f"{what} {path} is not a directory")
    return path


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"missing file {path}")
    return path


def locate_folder(source: Path, folder: str, marker: str) -> Path:
    """``source`` or ``source/folder``: whichever holds the file ``marker``.

    Lets users point at an extracted archive folder or at its parent.
    """
    require_dir(source)
    for candidate in (source, source / folder):
        if (candidate / marker).is_file():
            return candidate
    raise DataError(
        f"missing file {marker} in {source} or {source / folder} "
        f"(point --source at the extracted {folder}/ folder or its parent)"
    )


def array_chunks(images: np.ndarray, labels: np.ndarray, rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """Slices of in-memory arrays, ``rows`` at a time."""
    for start in range(0, len(labels), rows):
        yield images[start : start + rows], labels[start : start + rows]


def check_labels(labels: np.ndarray, low: int, high: int, where: object) -> None:
    """Refuse labels outside [low, high] (inclusive), naming the file."""
    if labels.size and (labels.min() < low or labels.max() > high):
        raise DataError(
            f"{where}: labels range {int(labels.min())}..{int(labels.max())}, "
            f"expected {low}..{high}"
        )


def natural_sorted(names: Iterable[str]) -> List[str]:
    """Sorted names; numerically when all are integers ("2" before "10")."""
    names = list(names)
    if names and all(name.isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)
