"""Shared by the photo sources (trafficsign, aerial): rescale a photo and cut a 64x64 window.

The original resizes the whole photo with Lanczos so the object has the
target size, then crops 64x64 at a random offset that keeps the object
inside. Here only the window is resampled (Pillow's ``resize(box=...)`` with
the same scale factors and pixel centres as the full resize). Pixels match
the full resize up to one grey level of rounding, without resizing a
12-megapixel photo 48 times per object.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Tuple

import numpy as np

from raysys.data.formats.stir_npz import CANVAS
from raysys.errors import DataError


@lru_cache(maxsize=4)
def open_rgb(path: Path):
    """The photo at ``path`` as an RGB Pillow image (cached: each serves 48 scales)."""
    from PIL import Image

    if not Path(path).is_file():
        raise DataError(f"missing image {path}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def window_range(start: int, end: int, size: int, where: str) -> Tuple[int, int]:
    """Inclusive range of window offsets keeping [start, end) inside a 64-pixel window and the photo."""
    lower, upper = max(0, end - CANVAS), min(size - CANVAS, start)
    if lower > upper:
        raise DataError(f"{where}: no 64x64 window holds the object (offsets {lower}..{upper})")
    return lower, upper


def scaled_size(image, factor_x: float, factor_y: float) -> Tuple[int, int]:
    """The photo's size after the original's whole-image resize."""
    width, height = image.size
    return round(width * factor_x), round(height * factor_y)


def scaled_window(image, size: Tuple[int, int], left: int, top: int) -> np.ndarray:
    """uint8 (64, 64, 3): the window at (left, top) of ``image`` resized to ``size`` (Lanczos)."""
    from PIL import Image

    width, height = image.size
    fx, fy = width / size[0], height / size[1]
    box = (left * fx, top * fy, (left + CANVAS) * fx, (top + CANVAS) * fy)
    return np.asarray(image.resize((CANVAS, CANVAS), Image.Resampling.LANCZOS, box=box))
