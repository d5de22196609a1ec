"""STIR traffic signs from the Mapillary Traffic Sign Dataset (MTSD v2, fully annotated).

``--source`` is a folder with

* ``splits/train.txt`` and ``splits/val.txt``: image keys, one a line;
* ``annotations/<key>.json``: MTSD's per-image annotation (``objects`` with
  ``key``, ``label``, ``bbox`` {xmin, ymin, xmax, ymax} and ``properties``);
* ``images/<key>.jpg``: the photos (the MTSD image archives unzipped).

The annotation part may also sit in a ``mtsd_v2_fully_annotated/``
subfolder, as MTSD ships it. Selection follows the original
(``data/gen_trafficsign.py``):

* objects of the train and val splits with no property set (not occluded,
  not ambiguous, ...), boxes rounded outwards to whole pixels;
* near-square boxes, ``|width - height| < 5``;
* classes with at least 3m such objects (m = 25: 75), except ``other-sign``,
  in label order;
* per class, the 3m objects with the largest ``min(width, height)``; a class
  is skipped if any of them is smaller than 64 pixels (signs are only
  shrunk), giving 16 classes in the original;
* objects 0, 3, 6, ... are train, 1, 4, ... validation, 2, 5, ... test.

Each photo is rescaled (Lanczos) so the sign box becomes s x s, and a 64x64
window that holds the sign is cut at a random offset. The original drew
offsets from Python's unseeded ``random``; here they come from
``RandomState(seed)``, so a generation is reproducible. Ties in size are
kept in file order (the original left them to SQLite).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from pipelines.stir.crops import open_rgb, scaled_size, scaled_window, window_range
from pipelines.stir.sources import register_source
from pipelines.stir.writer import StirBuilder, metadata
from raysys.data.formats.base import require_dir
from raysys.data.formats.stir_npz import SCALES, SPLITS, StirArrays
from raysys.errors import DataError

INSTANCES = 25
MIN_SIZE = 64
MAX_ASPECT_DIFF = 5
CATCH_ALL = "other-sign"
ANNOTATED = "mtsd_v2_fully_annotated"


@dataclass(frozen=True)
class Sign:
    image: str
    label: str
    xmin: int
    ymin: int
    width: int
    height: int


def _roots(source: Path):
    """(annotation root, image folder) of an MTSD folder."""
    root = require_dir(source, "MTSD folder")
    annotations = root / ANNOTATED if (root / ANNOTATED).is_dir() else root
    for folder in (root / "images", annotations / "images"):
        if folder.is_dir():
            return annotations, folder
    raise DataError(f"no images/ folder in MTSD folder {root}")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"missing MTSD annotation {path}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read MTSD annotation {path}: {err}") from None


def read_signs(annotations: Path) -> List[Sign]:
    """Every unflagged sign of the train and val splits, in file order."""
    signs = []
    for split in ("train", "val"):
        listing = annotations / "splits" / f"{split}.txt"
        if not listing.is_file():
            raise DataError(f"missing MTSD split list {listing}")
        for key in filter(None, (line.strip() for line in listing.read_text().splitlines())):
            path = annotations / "annotations" / f"{key}.json"
            for obj in _read_json(path).get("objects", []):
                if any(obj.get("properties", {}).values()):
                    continue
                try:
                    box = obj["bbox"]
                    xmin, xmax = math.floor(box["xmin"]), math.ceil(box["xmax"])
                    ymin, ymax = math.floor(box["ymin"]), math.ceil(box["ymax"])
                    signs.append(Sign(key, str(obj["label"]), xmin, ymin, xmax - xmin, ymax - ymin))
                except (KeyError, TypeError) as err:
                    raise DataError(f"{path}: object without a complete bbox/label ({err})") from None
    return signs


def select(signs: List[Sign], instances: int) -> Dict[str, List[Sign]]:
    """{label: 3 * instances signs, largest first} for the classes the original keeps."""
    needed = 3 * instances
    square = [s for s in signs if abs(s.width - s.height) < MAX_ASPECT_DIFF]
    counts = Counter(s.label for s in square)
    chosen = {}
    for label in sorted(label for label, n in counts.items() if n >= needed and label != CATCH_ALL):
        largest = sorted((s for s in square if s.label == label), key=lambda s: -min(s.width, s.height))[:needed]
        if min(min(s.width, s.height) for s in largest) >= MIN_SIZE:
            chosen[label] = largest
    return chosen


@register_source("trafficsign", needs_source=True, instances=INSTANCES,
                 description="Mapillary MTSD v2 folder (splits/, annotations/, images/)")
def build_trafficsign(source: Optional[Path], seed: int, instances: Optional[int]) -> StirArrays:
    if source is None:
        raise DataError("STIR trafficsign needs --source: an MTSD v2 folder")
    m = INSTANCES if instances is None else instances
    if m < 1:
        raise DataError(f"--instances must be >= 1, got {m}")
    annotations, images = _roots(Path(source))
    classes = select(read_signs(annotations), m)
    if not classes:
        raise DataError(f"no MTSD class in {source} has {3 * m} near-square signs of at least {MIN_SIZE} pixels")
    rng = np.random.RandomState(seed)
    builder = StirBuilder(list(classes), m, channels=3)
    for label, signs in enumerate(classes.values()):
        splits = signs[0::3], signs[1::3], signs[2::3]
        for i in range(m):
            for scale in SCALES:
                for split in range(len(SPLITS)):
                    sign = splits[split][i]
                    photo = open_rgb(images / f"{sign.image}.jpg")
                    size = scaled_size(photo, scale / sign.width, scale / sign.height)
                    x0, y0 = round(sign.xmin * scale / sign.width), round(sign.ymin * scale / sign.height)
                    where = f"MTSD image {sign.image} at scale {scale}"
                    left = rng.randint(*np.add(window_range(x0, x0 + scale, size[0], where), (0, 1)))
                    top = rng.randint(*np.add(window_range(y0, y0 + scale, size[1], where), (0, 1)))
                    window = scaled_window(photo, size, int(left), int(top))
                    builder.put(split, scale, label, i, window, x0 - int(left), y0 - int(top))
    return builder.arrays(metadata(
        "Traffic Sign",
        f"{len(classes)} traffic sign classes from Mapillary street photos, rescaled to object sizes 17 to 64 "
        "pixels and cut as 64x64 windows at a random offset holding the sign. Colour.",
        "CC BY-NC-SA 4.0, derived from the Mapillary Traffic Sign Dataset - https://www.mapillary.com/dataset/trafficsign",
    ))
