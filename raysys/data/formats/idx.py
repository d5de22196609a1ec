"""MNIST-style IDX files (raw or gzipped): MNIST and Fashion-MNIST.

An IDX file is a big-endian header (two zero bytes, a type code, the number
of dimensions, then one uint32 per dimension) followed by the data. Image
files are 3-D uint8 (count, rows, cols); label files 1-D uint8 (count,).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import BinaryIO, Iterator, List, Sequence, Tuple

import numpy as np

from raysys.data.formats.base import (
    CHUNK_ROWS,
    DATASETS,
    Chunk,
    DatasetSpec,
    SourceDataset,
    SplitSource,
    check_labels,
    require_dir,
)
from raysys.errors import DataError

IMAGES_MAGIC = 0x00000803  # uint8, 3 dims
LABELS_MAGIC = 0x00000801  # uint8, 1 dim

# split name -> file prefix of the originals
SPLIT_PREFIXES = {"train": "train", "test": "t10k"}

MNIST_CLASSES = [str(digit) for digit in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip

# Errors a damaged gzip stream raises while decompressing.
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


@contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    """The decompressed byte stream of an IDX file; damage becomes DataError."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as stream:
            yield stream
    except _GZIP_ERRORS as err:
        raise DataError(f"corrupt gzip file {path}: {err}") from None


def _read_exact(stream: BinaryIO, size: int, path: Path, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise DataError(f"truncated IDX file {path}: {what} needs {size} bytes, found {len(data)}")
    return data


def _read_header(stream: BinaryIO, path: Path, magic: int, ndim: int) -> Tuple[int, ...]:
    """Check the magic number and return the dimensions."""
    (found,) = struct.unpack(">I", _read_exact(stream, 4, path, "the magic number"))
    if found != magic:
        raise DataError(
            f"bad magic number in {path}: 0x{found:08x}, expected 0x{magic:08x} "
            f"(uint8 IDX with {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    return struct.unpack(f">{ndim}I", _read_exact(stream, 4 * ndim, path, "the header"))


def _find(folder: Path, prefix: str, kind: str) -> Path:
    """The file of one split and kind, under any of its customary names."""
    stems = [f"{prefix}-{kind}-ubyte", f"{prefix}-{kind.replace('-', '.')}-ubyte"]
    for stem in stems:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"missing file {folder / (stems[0] + '.gz')} (or its uncompressed form)")


def _read_labels(path: Path) -> np.ndarray:
    with _open(path) as stream:
        (count,) = _read_header(stream, path, LABELS_MAGIC, 1)
        labels = np.frombuffer(_read_exact(stream, count, path, f"{count} labels"), np.uint8)
    return labels.astype(np.int64)


def _image_header(path: Path) -> Tuple[int, int, int]:
    with _open(path) as stream:
        count, rows, cols = _read_header(stream, path, IMAGES_MAGIC, 3)
    if path.suffix != ".gz":
        expected = 16 + count * rows * cols
        if path.stat().st_size != expected:
            raise DataError(
                f"IDX file {path} has {path.stat().st_size} bytes, expected {expected} "
                f"for {count} images of {rows}x{cols}"
            )
    return count, rows, cols


def _image_chunks(path: Path, labels: np.ndarray, rows: int, cols: int) -> Iterator[Chunk]:
    with _open(path) as stream:
        _read_header(stream, path, IMAGES_MAGIC, 3)
        for start in range(0, len(labels), CHUNK_ROWS):
            n = min(CHUNK_ROWS, len(labels) - start)
            data = _read_exact(stream, n * rows * cols, path, f"images {start}..{start + n - 1}")
            images = np.frombuffer(data, np.uint8).reshape(n, rows, cols, 1)
            yield images, labels[start : start + n]


def _read_split(
    folder: Path, split: str, prefix: str, num_classes: int
) -> Tuple[SplitSource, Tuple[int, int, int]]:
    images_path = _find(folder, prefix, "images-idx3")
    labels_path = _find(folder, prefix, "labels-idx1")
    labels = _read_labels(labels_path)
    count, rows, cols = _image_header(images_path)
    if count != len(labels):
        raise DataError(
            f"{images_path.name} holds {count} images but {labels_path.name} holds "
            f"{len(labels)} labels (in {folder})"
        )
    check_labels(labels, 0, num_classes - 1, labels_path)
    chunks = partial(_image_chunks, images_path, labels, rows, cols)
    return SplitSource(split, count, chunks), (rows, cols, 1)


def read_idx(source: Path, *, name: str, classes: Sequence[str]) -> SourceDataset:
    """Read the train and t10k IDX file pairs in the folder ``source``."""
    folder = require_dir(source)
    splits: List[SplitSource] = []
    shapes = set()
    for split, prefix in SPLIT_PREFIXES.items():
        split_source, shape = _read_split(folder, split, prefix, len(classes))
        splits.append(split_source)
        shapes.add(shape)
    if len(shapes) != 1:
        raise DataError(f"IDX splits in {folder} have different image sizes: {sorted(shapes)}")
    return SourceDataset(
        name=name,
        source_format="idx",
        classes=list(classes),
        encoding="raw",
        image_shape=shapes.pop(),
        splits=splits,
    )


DATASETS.add(
    "mnist",
    DatasetSpec(
        name="mnist",
        reader=partial(read_idx, name="mnist", classes=MNIST_CLASSES),
        channels=1,
        size=28,
        nominal_size=28,
        num_classes=10,
        mean=(0.1307,),
        std=(0.3081,),
        description="MNIST handwritten digits, 28x28 grayscale (IDX files)",
    ),
)

DATASETS.add(
    "fashion-mnist",
    DatasetSpec(
        name="fashion-mnist",
        reader=partial(read_idx, name="fashion-mnist", classes=FASHION_MNIST_CLASSES),
        channels=1,
        size=28,
        nominal_size=28,
        num_classes=10,
        mean=(0.2860,),
        std=(0.3530,),
        description="Fashion-MNIST clothing images, 28x28 grayscale (IDX files)",
    ),
    aliases=("fashion_mnist", "fmnist"),
)
