"""STIR datasets in the original npz layout, and their rows as shards.

The layout of ``taltstidl/scale-equivariant-cnn`` (``data/README.md``):

============  ======================================  =====================
key           shape                                   dtype
============  ======================================  =====================
``imgs``      (3, 48, n, m, 64, 64) grey or           uint8, 0..255
              (3, 48, n, m, 64, 64, 3) colour
``lbls``      (3, 48, n, m)                           int64, 0..n-1
``scls``      (3, 48, n, m)                           int64, 17..64
``psts``      (3, 48, n, m, 2): (left, top)           int64
``metadata``  (6, 2): title, description, author,     str
              license, version, date
``lbldata``   (n,) class names                        str
============  ======================================  =====================

Axis 0 is the split (train, val, test), axis 1 the scale index ``64 - s``
(s = 64 first), then class and instance. As shards, each split becomes rows
in that C order (scale index, class, instance); ``index`` is the row number
and the extra int64 columns ``scale``, ``left`` and ``top`` carry the latents.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from raysys.data.formats.base import DATASETS, DatasetSpec, SourceDataset, SplitSource, require_dir
from raysys.errors import DataError

CANVAS = 64
SCALES: Tuple[int, ...] = tuple(range(CANVAS, 16, -1))  # scale index i holds s = 64 - i
SPLITS: Tuple[str, ...] = ("train", "val", "test")
METADATA_KEYS: Tuple[str, ...] = ("title", "description", "author", "license", "version", "date")
LATENT_COLUMNS: Tuple[str, ...] = ("scale", "left", "top")
NPZ_KEYS: Tuple[str, ...] = ("imgs", "lbls", "scls", "psts", "metadata", "lbldata")


@dataclass
class StirArrays:
    """The six arrays of one STIR npz file (see the module docstring)."""

    imgs: np.ndarray
    lbls: np.ndarray
    scls: np.ndarray
    psts: np.ndarray
    metadata: np.ndarray
    lbldata: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.imgs.shape[2])

    @property
    def instances(self) -> int:
        return int(self.imgs.shape[3])

    @property
    def channels(self) -> int:
        return 3 if self.imgs.ndim == 7 else 1

    def check(self, where: object = "STIR arrays") -> "StirArrays":
        """DataError unless shapes, dtypes and value ranges follow the layout."""
        if self.imgs.ndim not in (6, 7) or self.imgs.shape[:2] != (len(SPLITS), len(SCALES)):
            raise DataError(f"{where}: imgs has shape {self.imgs.shape}, expected (3, 48, n, m, 64, 64[, 3])")
        n, m = self.imgs.shape[2:4]
        if self.imgs.shape[4:6] != (CANVAS, CANVAS) or (self.imgs.ndim == 7 and self.imgs.shape[6] != 3):
            raise DataError(f"{where}: imgs has shape {self.imgs.shape}, expected 64x64 images")
        if self.imgs.dtype != np.uint8:
            raise DataError(f"{where}: imgs is {self.imgs.dtype}, expected uint8")
        expected = {"lbls": (3, 48, n, m), "scls": (3, 48, n, m), "psts": (3, 48, n, m, 2)}
        for key, shape in expected.items():
            array = getattr(self, key)
            if array.shape != shape or not np.issubdtype(array.dtype, np.integer):
                raise DataError(f"{where}: {key} is {array.dtype} {array.shape}, expected integers {shape}")
        if self.lbls.size and (self.lbls.min() < 0 or self.lbls.max() >= n):
            raise DataError(f"{where}: lbls range {self.lbls.min()}..{self.lbls.max()}, expected 0..{n - 1}")
        if not np.array_equal(self.scls, np.broadcast_to(np.array(SCALES).reshape(1, 48, 1, 1), self.scls.shape)):
            raise DataError(f"{where}: scls must hold 64 - i along the scale axis i")
        if self.metadata.shape != (len(METADATA_KEYS), 2) or self.lbldata.shape != (n,):
            raise DataError(
                f"{where}: metadata {self.metadata.shape} / lbldata {self.lbldata.shape}, expected (6, 2) / ({n},)"
            )
        return self

    def metadata_dict(self) -> Dict[str, str]:
        return {str(key): str(value) for key, value in self.metadata}


def save_npz(arrays: StirArrays, path: Path) -> None:
    """Write ``arrays`` compressed to ``path`` atomically (temporary file, then rename)."""
    arrays.check()
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}.npz")
    try:
        np.savez_compressed(temporary, **{key: getattr(arrays, key) for key in NPZ_KEYS})
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def load_npz(path: Path) -> StirArrays:
    """The arrays of an original-layout STIR npz file (DataError if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing STIR npz file {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in NPZ_KEYS if key not in data.files]
            if missing:
                raise DataError(f"{path} is not a STIR npz file: it lacks {missing}")
            arrays = StirArrays(**{key: data[key] for key in NPZ_KEYS})
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read STIR npz file {path}: {err}") from None
    return arrays.check(path)


def split_rows(arrays: StirArrays, split: int) -> Tuple[np.ndarray, Dict[str, np.ndarray], np.ndarray]:
    """(images (N, 64, 64, C), latent columns, labels) of one split, rows in layout order."""
    images = arrays.imgs[split].reshape((-1, CANVAS, CANVAS, arrays.channels))
    positions = arrays.psts[split].reshape(-1, 2).astype(np.int64)
    columns = {
        "scale": arrays.scls[split].reshape(-1).astype(np.int64),
        "left": positions[:, 0].copy(),
        "top": positions[:, 1].copy(),
    }
    return images, columns, arrays.lbls[split].reshape(-1).astype(np.int64)


def _chunks(images: np.ndarray, labels: np.ndarray, rows: int = 4096):
    for start in range(0, len(labels), rows):
        yield np.ascontiguousarray(images[start : start + rows]), labels[start : start + rows]


def scale_counts(arrays: StirArrays) -> Dict[str, Dict[str, int]]:
    """{split: {scale: rows}} for the manifest, so scenario row counts need no scan."""
    per_scale = arrays.num_classes * arrays.instances
    return {split: {str(s): per_scale for s in SCALES} for split in SPLITS}


def to_source_dataset(arrays: StirArrays, name: str) -> SourceDataset:
    """The arrays as a raw dataset for :func:`raysys.data.shards.write_shards`."""
    arrays.check(name)
    splits: List[SplitSource] = []
    for number, split in enumerate(SPLITS):
        images, columns, labels = split_rows(arrays, number)
        splits.append(SplitSource(split, len(labels), partial(_chunks, images, labels), columns))
    return SourceDataset(
        name=name,
        source_format="stir-npz",
        classes=[str(label) for label in arrays.lbldata],
        encoding="raw",
        image_shape=(CANVAS, CANVAS, arrays.channels),
        splits=splits,
        options={
            "stir": {"instances": arrays.instances, "scales": list(SCALES), "latent_columns": list(LATENT_COLUMNS)},
            "metadata": arrays.metadata_dict(),
            "scale_counts": scale_counts(arrays),
        },
    )


def find_npz(source: Path, stem: str) -> Path:
    """``source`` itself if it is a file, else ``<source>/<stem>.npz``."""
    source = Path(source)
    if source.is_file():
        return source
    if source.suffix == ".npz":
        raise DataError(f"missing STIR npz file {source}")
    path = require_dir(source) / f"{stem}.npz"
    if not path.is_file():
        raise DataError(f"missing STIR npz file {path} (the original's {stem}.npz)")
    return path


def read_stir_npz(source: Path, *, name: str, stem: str) -> SourceDataset:
    """Reader for ``prepare stir-<stem>``: the folder holding ``<stem>.npz`` (or the file)."""
    return to_source_dataset(load_npz(find_npz(source, stem)), name)


# (stem, channels, classes in the original files, description)
_STIR_DATASETS = (
    ("emoji", 1, 36, "STIR emoji: 36 Font Awesome faces at scales 17-64 on a 64x64 canvas"),
    ("mnist", 1, 10, "STIR MNIST: digits at scales 17-64 on a 64x64 canvas"),
    ("trafficsign", 3, 16, "STIR traffic signs (Mapillary MTSD) at scales 17-64, colour"),
    ("aerial", 3, 9, "STIR aerial objects (DOTA v1.5) at scales 17-64, colour"),
)

for _stem, _channels, _classes, _description in _STIR_DATASETS:
    DATASETS.add(
        f"stir-{_stem}",
        DatasetSpec(
            name=f"stir-{_stem}",
            reader=partial(read_stir_npz, name=f"stir-{_stem}", stem=_stem),
            channels=_channels,
            size=CANVAS,
            nominal_size=CANVAS,
            num_classes=_classes,
            # The original feeds pixels / 255 without normalisation.
            mean=(0.0,) * _channels,
            std=(1.0,) * _channels,
            description=_description,
        ),
        aliases=(f"stir_{_stem}",),
    )
