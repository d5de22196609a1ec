"""STIR aerial objects from DOTA v1.5 (Google Earth images).

``--source`` is a DOTA folder with ``train/`` and ``val/``, each holding
``labelTxt/<image>.txt`` (DOTA v1.5 labels) and ``images/<image>.png``. A
label file starts with ``imagesource:<source>`` and ``gsd:<value>``, then
one object a line: ``x1 y1 x2 y2 x3 y3 x4 y4 category difficult``.

Selection follows the original (``data/gen_aerial.py``):

* objects from Google Earth images in RGB, whose first edge is within 3
  degrees of horizontal (``|atan2(y2 - y1, x2 - x1)| < 3°``), whose polygon
  lies inside the image, and whose image is more than 4 times the object's
  longer side in both directions (integer division, as SQLite did it);
* classes with at least 3m such objects (m = 25: 75) of longer side >= 64,
  in label order (9 classes in the original);
* per class, the 3m objects with the longest sides; objects 0, 3, ... are
  train, 1, 4, ... validation, 2, 5, ... test.

Each image is rescaled (Lanczos) by s / max(width, height), and a 64x64
window that holds the object is cut at a random offset. The original drew
offsets from Python's unseeded ``random``; here they come from
``RandomState(seed)``. Ties in size are kept in file order.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from pipelines.stir.crops import open_rgb, scaled_size, scaled_window, window_range
from pipelines.stir.sources import register_source
from pipelines.stir.writer import StirBuilder, metadata
from raysys.data.formats.base import require_dir
from raysys.data.formats.stir_npz import SCALES, SPLITS, StirArrays
from raysys.errors import DataError

INSTANCES = 25
MIN_SIZE = 64
MAX_ANGLE = 3.0
MIN_IMAGE_RATIO = 4
IMAGE_SOURCE = "GoogleEarth"


@dataclass(frozen=True)
class AerialObject:
    image: Path
    label: str
    xs: Tuple[int, ...]
    ys: Tuple[int, ...]

    @property
    def size(self) -> int:
        return max(max(self.xs) - min(self.xs), max(self.ys) - min(self.ys))

    @property
    def angle(self) -> float:
        return abs(math.degrees(math.atan2(self.ys[1] - self.ys[0], self.xs[1] - self.xs[0])))


def _image_info(path: Path) -> Tuple[int, int, bool]:
    """(width, height, is RGB) of an image, from its header."""
    from PIL import Image

    if not path.is_file():
        raise DataError(f"missing DOTA image {path}")
    try:
        with Image.open(path) as image:
            return image.size[0], image.size[1], image.mode == "RGB"
    except OSError as err:
        raise DataError(f"cannot read DOTA image {path}: {err}") from None


def _parse_labels(path: Path) -> Tuple[str, List[Tuple[List[int], str]]]:
    """(image source, [(8 coordinates, category)]) of one DOTA label file."""
    lines = path.read_text(encoding="ascii", errors="replace").splitlines()
    if not lines or not lines[0].startswith("imagesource:"):
        raise DataError(f"{path}: not a DOTA v1.5 label file (first line must be imagesource:...)")
    objects = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        try:
            objects.append(([int(float(v)) for v in fields[:8]], fields[8]))
        except (ValueError, IndexError):
            raise DataError(f"{path} line {number}: expected 'x1 y1 ... x4 y4 category difficult'") from None
    return lines[0][len("imagesource:"):].strip(), objects


def read_objects(source: Path) -> List[AerialObject]:
    """The objects that pass the original's per-object filter, in file order."""
    root = require_dir(source, "DOTA folder")
    found = []
    for split in ("train", "val"):
        labels = root / split / "labelTxt"
        if not labels.is_dir():
            raise DataError(f"missing DOTA label folder {labels}")
        for path in sorted(labels.glob("*.txt")):
            image_source, objects = _parse_labels(path)
            if image_source != IMAGE_SOURCE or not objects:
                continue
            image = root / split / "images" / f"{path.stem}.png"
            width, height, rgb = _image_info(image)
            for coords, label in objects:
                obj = AerialObject(image, label, tuple(coords[0::2]), tuple(coords[1::2]))
                if (
                    rgb and obj.size > 0 and obj.angle < MAX_ANGLE
                    and width // obj.size > MIN_IMAGE_RATIO and height // obj.size > MIN_IMAGE_RATIO
                    and max(obj.xs) <= width and max(obj.ys) <= height
                ):
                    found.append(obj)
    return found


def select(objects: List[AerialObject], instances: int) -> Dict[str, List[AerialObject]]:
    """{label: 3 * instances objects, largest first} for classes with enough objects >= 64 pixels."""
    needed = 3 * instances
    counts = Counter(obj.label for obj in objects if obj.size >= MIN_SIZE)
    return {
        label: sorted((o for o in objects if o.label == label), key=lambda o: -o.size)[:needed]
        for label in sorted(label for label, n in counts.items() if n >= needed)
    }


@register_source("aerial", needs_source=True, instances=INSTANCES,
                 description="DOTA v1.5 folder (train/ and val/ with labelTxt/ and images/)")
def build_aerial(source: Optional[Path], seed: int, instances: Optional[int]) -> StirArrays:
    if source is None:
        raise DataError("STIR aerial needs --source: a DOTA v1.5 folder")
    m = INSTANCES if instances is None else instances
    if m < 1:
        raise DataError(f"--instances must be >= 1, got {m}")
    classes = select(read_objects(Path(source)), m)
    if not classes:
        raise DataError(f"no DOTA class in {source} has {3 * m} usable Google Earth objects of at least {MIN_SIZE} pixels")
    rng = np.random.RandomState(seed)
    builder = StirBuilder(list(classes), m, channels=3)
    for label, objects in enumerate(classes.values()):
        splits = objects[0::3], objects[1::3], objects[2::3]
        for i in range(m):
            for scale in SCALES:
                for split in range(len(SPLITS)):
                    obj = splits[split][i]
                    factor = scale / obj.size
                    photo = open_rgb(obj.image)
                    size = scaled_size(photo, factor, factor)
                    x0, x1 = round(min(obj.xs) * factor), round(max(obj.xs) * factor)
                    y0, y1 = round(min(obj.ys) * factor), round(max(obj.ys) * factor)
                    where = f"DOTA image {obj.image.name} at scale {scale}"
                    left = rng.randint(*np.add(window_range(x0, x1, size[0], where), (0, 1)))
                    top = rng.randint(*np.add(window_range(y0, y1, size[1], where), (0, 1)))
                    window = scaled_window(photo, size, int(left), int(top))
                    builder.put(split, scale, label, i, window, x0 - int(left), y0 - int(top))
    return builder.arrays(metadata(
        "Aerial Object",
        f"{len(classes)} object classes from DOTA v1.5 Google Earth images, rescaled to object sizes 17 to 64 "
        "pixels and cut as 64x64 windows at a random offset holding the object. Colour.",
        "CC BY-NC-SA 4.0, derived from the Dataset for Object Detection in Aerial Images - "
        "https://captain-whu.github.io/DOTA/dataset.html",
    ))
