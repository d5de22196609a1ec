"""Downsampled ImageNet (Imagenet16/32/64), in either of its two common layouts.

* ``npz``: the official batches ``train_data_batch_{1..10}.npz`` and
  ``val_data.npz`` (directly in the source folder or one folder below, e.g.
  ``Imagenet32_train_npz/``). ``data`` is uint8 (n, 3*S*S), each row the
  three colour planes one after the other; ``labels`` are 1..1000.
* ``folder`` (as used by FlexConv): ``<source>/{train,val}/<class>/<image>.png``.

Class names: the npz layout has none, so class i is named by its original
label, ``str(i + 1)``. Folder class names sort numerically when they are all
integers, so folders named by the original labels line up with the npz.
"""

from __future__ import annotations

import math
import re
import zipfile
import zlib
from functools import partial
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
from PIL import Image

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
    natural_sorted,
    require_dir,
)
from raysys.data.formats.imagefolder import DEFAULT_SPLIT_DIRS, scan_tree
from raysys.data.formats.npy_stream import open_rows, read_rows
from raysys.errors import DataError

NUM_CLASSES = 1000
SIDES = (16, 32, 64)
_TRAIN_BATCH = re.compile(r"train_data_batch_(\d+)\.npz")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _check_side(side: int, expected: int, name: str, where: object) -> None:
    if side != expected:
        other = f"imagenet{side}" if side in SIDES else "none of imagenet16/32/64"
        raise DataError(
            f"{where} holds {side}x{side} images but {name} is {expected}x{expected} (it fits {other})"
        )


# ---- npz batches -----------------------------------------------------------


def _npz_files(source: Path) -> Dict[str, List[Path]]:
    """split -> its npz files in order; empty when there are none."""
    found = list(source.glob("*.npz")) + list(source.glob("*/*.npz"))
    train: Dict[int, Path] = {}
    val = []
    for path in found:
        match = _TRAIN_BATCH.fullmatch(path.name)
        if match:
            number = int(match.group(1))
            if number in train:
                raise DataError(f"two copies of {path.name}: {train[number]} and {path}")
            train[number] = path
        elif path.name == "val_data.npz":
            val.append(path)
    if len(val) > 1:
        raise DataError(f"several val_data.npz under {source}: {', '.join(map(str, sorted(val)))}")
    missing = [n for n in range(1, max(train, default=0) + 1) if n not in train]
    if missing:
        raise DataError(
            f"missing file train_data_batch_{missing[0]}.npz (found batches {sorted(train)} under {source})"
        )
    files = {}
    if train:
        files["train"] = [train[n] for n in sorted(train)]
    if val:
        files["val"] = val
    return files


def _npz_labels(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "labels" not in archive.files:
                raise DataError(
                    f"{path} lacks the array 'labels' (has: {', '.join(archive.files)})"
                )
            labels = np.asarray(archive["labels"]).astype(np.int64).reshape(-1)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"corrupt npz file {path}: {err}") from None
    check_labels(labels, 1, NUM_CLASSES, path)
    return labels - 1


def _npz_side(path: Path, count: int) -> int:
    """Side length of the images in ``path``, checking the shape of ``data``."""
    with open_rows(path, "data") as (shape, dtype, _):
        pass  # the header is all we need here
    side = math.isqrt(shape[-1] // 3) if len(shape) == 2 else 0
    if dtype != np.uint8 or len(shape) != 2 or shape[1] != 3 * side * side or side == 0:
        raise DataError(f"{path}: 'data' is {dtype} {shape}, expected uint8 (n, 3*S*S)")
    if shape[0] != count:
        raise DataError(f"{path} holds {shape[0]} images but {count} labels")
    return side


def _npz_chunks(files: Sequence[Path], labels: Sequence[np.ndarray], side: int) -> Iterator[Chunk]:
    for path, file_labels in zip(files, labels):
        with open_rows(path, "data") as (_, dtype, stream):
            for start in range(0, len(file_labels), CHUNK_ROWS):
                n = min(CHUNK_ROWS, len(file_labels) - start)
                rows = read_rows(stream, n, (3, side, side), dtype, f"'data' in {path}")
                yield rows.transpose(0, 2, 3, 1), file_labels[start : start + n]


def _read_npz(files: Dict[str, List[Path]], name: str, side: int) -> List[SplitSource]:
    splits = []
    for split, paths in files.items():
        labels = [_npz_labels(path) for path in paths]
        for path, file_labels in zip(paths, labels):
            _check_side(_npz_side(path, len(file_labels)), side, name, path)
        count = sum(len(file_labels) for file_labels in labels)
        splits.append(SplitSource(split, count, partial(_npz_chunks, paths, labels, side)))
    return splits


# ---- PNG folders -----------------------------------------------------------


def _decode(path: Path, side: int, name: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except _DECODE_ERRORS as err:
        raise DataError(f"unreadable image {path}: {err}") from None
    if pixels.shape[:2] != (side, side):
        raise DataError(
            f"{path} is {pixels.shape[1]}x{pixels.shape[0]}, expected {side}x{side} for {name}"
        )
    return pixels


def _folder_chunks(
    files: Sequence[Path], labels: np.ndarray, side: int, name: str
) -> Iterator[Chunk]:
    for start in range(0, len(files), CHUNK_ROWS):
        batch = files[start : start + CHUNK_ROWS]
        yield np.stack([_decode(path, side, name) for path in batch]), labels[
            start : start + len(batch)
        ]


def _folder_side(path: Path) -> int:
    try:
        with Image.open(path) as image:
            width, height = image.size
    except _DECODE_ERRORS as err:
        raise DataError(f"unreadable image {path}: {err}") from None
    if width != height:
        raise DataError(f"{path} is {width}x{height}; downsampled ImageNet images are square")
    return width


def _read_folders(source: Path, name: str, side: int) -> Tuple[List[str], List[SplitSource]]:
    classes, files = scan_tree(source, DEFAULT_SPLIT_DIRS, sort=natural_sorted)
    first = next(iter(files.values()))[0][0]
    _check_side(_folder_side(first), side, name, first.parent.parent)
    splits = [
        SplitSource(split, len(paths), partial(_folder_chunks, paths, labels, side, name))
        for split, (paths, labels) in files.items()
    ]
    return classes, splits


# ---- both ------------------------------------------------------------------


def read_downsampled_imagenet(source: Path, *, name: str, side: int) -> SourceDataset:
    """The npz batches if ``source`` has any, else the ``{train,val}/<class>/`` PNG folders."""
    require_dir(source)
    npz = _npz_files(source)
    if npz:
        source_format = "imagenet-npz"
        classes = [str(label + 1) for label in range(NUM_CLASSES)]
        splits = _read_npz(npz, name, side)
    elif any((source / folder).is_dir() for folder in DEFAULT_SPLIT_DIRS.values()):
        source_format = "imagenet-folder"
        classes, splits = _read_folders(source, name, side)
    else:
        raise DataError(
            f"no downsampled ImageNet in {source}: expected train_data_batch_<n>.npz / val_data.npz "
            f"(here or one folder below) or train/<class>/*.png and val/<class>/*.png"
        )
    return SourceDataset(
        name=name,
        source_format=source_format,
        classes=classes,
        encoding="raw",
        image_shape=(side, side, 3),
        splits=splits,
    )


for _side in SIDES:
    DATASETS.add(
        f"imagenet{_side}",
        DatasetSpec(
            name=f"imagenet{_side}",
            reader=partial(read_downsampled_imagenet, name=f"imagenet{_side}", side=_side),
            channels=3,
            size=_side,
            nominal_size=_side,
            num_classes=NUM_CLASSES,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            description=f"ImageNet-1k downsampled to {_side}x{_side} (npz batches or PNG folders)",
        ),
        aliases=(f"imagenet-{_side}", f"imagenet_{_side}"),
    )
