"""ImageNet-style ImageFolder: ``root/<split>/<class>/<image>.{JPEG,jpg,png}``.

Images stay encoded: JPEG files keep their DCT coefficients, rewritten losslessly
with a restart marker after every MCU so that the stream can decode just a crop's
window (:func:`raysys.data.jpeg_window.with_restarts`; the same pixels; stored byte
for byte with ``RAYSYS_JPEG_WINDOW=0`` or without the compiled helper); other
formats, non-RGB JPEGs and images resized on request are re-encoded as RGB JPEG.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from raysys.data import jpeg_window
from raysys.data.formats.base import (
    DATASETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Chunk,
    DatasetSpec,
    SourceDataset,
    SplitSource,
    require_dir,
)
from raysys.errors import DataError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
DEFAULT_SPLIT_DIRS = {"train": "train", "val": "val"}
JPEG_QUALITY = 90
CHUNK_FILES = 256
# What PIL raises for files it cannot identify or decode.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _is_image(path: Path) -> bool:
    # Hidden files include macOS "._x.jpg" resource forks, which are not images.
    return (
        path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


def _scaled_size(size: Tuple[int, int], short_side: int) -> Tuple[int, int]:
    width, height = size
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_image(path: Path, resize: int = 0) -> bytes:
    """The JPEG bytes to store for ``path``, its short side at most ``resize`` (0: any)."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            target = (
                _scaled_size(image.size, resize) if resize and min(image.size) > resize else None
            )
            if image.format == "JPEG" and image.mode == "RGB" and target is None:
                # Decode at 1/8 scale: cheap, yet it reads every byte, so damage shows.
                image.draft("RGB", (1, 1))
                image.load()
                return jpeg_window.with_restarts(data)
            if image.format == "JPEG" and target is not None:
                image.draft("RGB", target)  # let libjpeg shrink by 2^k first
            image = image.convert("RGB")
            if target is not None:
                image = image.resize(target, Image.Resampling.BICUBIC)
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=JPEG_QUALITY)
            return jpeg_window.with_restarts(out.getvalue())
    except _DECODE_ERRORS as err:
        raise DataError(f"unreadable image {path}: {err}") from None


def find_split_dirs(source: Path, split_dirs: Mapping[str, str]) -> Dict[str, Path]:
    """split name -> folder, for the split folders present under ``source``."""
    require_dir(source)
    present = {
        split: source / folder for split, folder in split_dirs.items() if (source / folder).is_dir()
    }
    if not present:
        expected = ", ".join(f"{folder}/" for folder in split_dirs.values())
        raise DataError(
            f"no split folder ({expected}) in {source}; expected {source}/<split>/<class>/<image>"
        )
    return present


def scan_classes(split_dir: Path) -> Dict[str, List[Path]]:
    """class name -> its image files (sorted), for one split folder."""
    entries = sorted(split_dir.iterdir())
    stray = [entry.name for entry in entries if _is_image(entry)]
    if stray:
        raise DataError(
            f"{split_dir} holds images directly (e.g. {stray[0]}); expected "
            f"{split_dir}/<class>/<image>: sort them into one folder per class first"
        )
    classes = {}
    for entry in entries:
        if entry.is_dir() and not entry.name.startswith("."):
            images = sorted(path for path in entry.rglob("*") if _is_image(path))
            if not images:
                raise DataError(
                    f"class folder {entry} holds no images ({'/'.join(IMAGE_SUFFIXES)})"
                )
            classes[entry.name] = images
    if not classes:
        raise DataError(f"empty ImageFolder split {split_dir}: no class folders in it")
    return classes


LabeledFiles = Tuple[List[Path], np.ndarray]


def scan_tree(
    source: Path, split_dirs: Mapping[str, str], sort: Callable[[Iterable[str]], List[str]] = sorted
) -> Tuple[List[str], Dict[str, LabeledFiles]]:
    """(classes, split -> (files, int64 labels)) of an ImageFolder tree.

    Classes are the union over splits, ordered by ``sort``; labels index them.
    """
    scans = {
        split: scan_classes(folder) for split, folder in find_split_dirs(source, split_dirs).items()
    }
    classes = sort(set().union(*scans.values()))
    files = {}
    for split, by_class in scans.items():
        present = [
            (label, by_class[name]) for label, name in enumerate(classes) if name in by_class
        ]
        paths = [path for _, images in present for path in images]
        labels = np.concatenate(
            [np.full(len(images), label, np.int64) for label, images in present]
        )
        files[split] = (paths, labels)
    return classes, files


def _encoded_chunks(files: Sequence[Path], labels: np.ndarray, resize: int) -> Iterator[Chunk]:
    encode = partial(encode_image, resize=resize)
    # PIL releases the GIL while decoding and encoding, so threads scale.
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    try:
        for start in range(0, len(files), CHUNK_FILES):
            batch = files[start : start + CHUNK_FILES]
            yield list(pool.map(encode, batch)), labels[start : start + len(batch)]
    finally:
        # On an error or Ctrl-C, do not wait for the rest of the chunk.
        pool.shutdown(cancel_futures=True)


def read_imagefolder(
    source: Path,
    *,
    resize: int = 0,
    split_dirs: Optional[Mapping[str, str]] = None,
) -> SourceDataset:
    """Every split folder present under ``source``; ``split_dirs`` maps split name -> folder."""
    if resize < 0:
        raise DataError(f"resize must be >= 0 (0 keeps the original size), got {resize}")
    classes, files = scan_tree(source, split_dirs or DEFAULT_SPLIT_DIRS)
    splits = [
        SplitSource(split, len(paths), partial(_encoded_chunks, paths, labels, resize))
        for split, (paths, labels) in files.items()
    ]
    return SourceDataset(
        name="imagenet",
        source_format="imagefolder",
        classes=classes,
        encoding="jpeg",
        image_shape=None,
        splits=splits,
        options={"resize": resize, "jpeg_restart_markers": jpeg_window.enabled()},
    )


DATASETS.add(
    "imagenet",
    DatasetSpec(
        name="imagenet",
        reader=read_imagefolder,
        channels=3,
        size=None,
        nominal_size=224,
        num_classes=1000,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        description="ImageNet-1k (or any ImageFolder tree), stored as JPEG bytes",
    ),
    aliases=("imagenet1k", "imagenet-1k", "imagefolder"),
)
