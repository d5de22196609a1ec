"""STIR emoji: the original's 36 Font Awesome "regular" faces, white on black.

The original rendered Font Awesome 5.15.3 SVGs; the PyPI package
``fontawesomefree`` ships Font Awesome 6, which renamed the icons.
:data:`ICON_NAMES` maps each original name (kept as the class name, in the
original class order) to its Font Awesome 6 file. Each icon is rendered by
cairosvg at s x s and its coverage (alpha) becomes the grey value, placed at
a random position inside the 64x64 canvas.

Random positions use ``numpy.random.RandomState(seed)`` drawn in the
original's order (icon, scale from 64 down, split), so ``--seed 42`` places
every icon where the original file has it.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from pipelines.stir.sources import register_source
from pipelines.stir.writer import StirBuilder, metadata
from raysys.data.formats.stir_npz import CANVAS, SCALES, SPLITS, StirArrays
from raysys.errors import DataError

# original (Font Awesome 5) name -> Font Awesome 6 file name, in the original class order
ICON_NAMES: Dict[str, str] = {
    "tired": "face-tired",
    "surprise": "face-surprise",
    "smile-wink": "face-smile-wink",
    "smile-beam": "face-smile-beam",
    "sad-tear": "face-sad-tear",
    "sad-cry": "face-sad-cry",
    "meh-rolling-eyes": "face-rolling-eyes",
    "meh-blank": "face-meh-blank",
    "laugh-wink": "face-laugh-wink",
    "laugh-squint": "face-laugh-squint",
    "laugh-beam": "face-laugh-beam",
    "laugh": "face-laugh",
    "kiss-wink-heart": "face-kiss-wink-heart",
    "kiss-beam": "face-kiss-beam",
    "kiss": "face-kiss",
    "grin-wink": "face-grin-wink",
    "grin-tongue-wink": "face-grin-tongue-wink",
    "grin-tongue-squint": "face-grin-tongue-squint",
    "grin-tongue": "face-grin-tongue",
    "grin-tears": "face-grin-tears",
    "grin-stars": "face-grin-stars",
    "grin-squint-tears": "face-grin-squint-tears",
    "grin-squint": "face-grin-squint",
    "grin-hearts": "face-grin-hearts",
    "grin-beam-sweat": "face-grin-beam-sweat",
    "grin-beam": "face-grin-beam",
    "grin-alt": "face-grin-wide",
    "grin": "face-grin",
    "grimace": "face-grimace",
    "frown-open": "face-frown-open",
    "flushed": "face-flushed",
    "dizzy": "face-dizzy",
    "angry": "face-angry",
    "smile": "face-smile",
    "meh": "face-meh",
    "frown": "face-frown",
}


def fontawesome_svgs() -> Path:
    """The folder of Font Awesome "regular" SVGs shipped by ``fontawesomefree``."""
    try:
        import fontawesomefree
    except ImportError:
        raise DataError("STIR emoji needs the package fontawesomefree (pip install fontawesomefree)") from None
    folder = Path(fontawesomefree.__file__).parent / "static" / "fontawesomefree" / "svgs" / "regular"
    if not folder.is_dir():
        raise DataError(f"fontawesomefree has no SVG folder {folder}")
    return folder


def _svg_folder(source: Optional[Path]) -> Path:
    """``source`` (a folder of regular SVGs, or Font Awesome's ``svgs/`` folder) or the package's."""
    if source is None:
        return fontawesome_svgs()
    for folder in (Path(source) / "regular", Path(source)):
        if folder.is_dir() and any(folder.glob("*.svg")):
            return folder
    raise DataError(f"no Font Awesome SVG files in {source} (nor in {Path(source) / 'regular'})")


def _svg_file(folder: Path, original: str) -> Path:
    """The SVG of an icon under its Font Awesome 6 name, or under its original name (5.x folders)."""
    for name in (ICON_NAMES[original], original):
        if (folder / f"{name}.svg").is_file():
            return folder / f"{name}.svg"
    raise DataError(f"no SVG for emoji {original!r} ({ICON_NAMES[original]}.svg) in {folder}")


def render_coverage(svg: Path, scale: int) -> np.ndarray:
    """The icon's alpha channel rendered at scale x scale: uint8 (scale, scale)."""
    import cairosvg
    from PIL import Image

    png = cairosvg.svg2png(url=str(svg), parent_width=scale, parent_height=scale)
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    if image.size != (scale, scale):
        raise DataError(f"{svg} rendered at {image.size}, expected {scale}x{scale}")
    return np.asarray(image)[..., 3]


@register_source("emoji", needs_source=False, instances=1,
                 description="36 Font Awesome regular faces (fontawesomefree + cairosvg)")
def build_emoji(source: Optional[Path], seed: int, instances: Optional[int]) -> StirArrays:
    if instances not in (None, 1):
        raise DataError(f"STIR emoji has exactly 1 instance per class, got --instances {instances}")
    folder = _svg_folder(source)
    names = list(ICON_NAMES)
    files = [_svg_file(folder, name) for name in names]
    rng = np.random.RandomState(seed)
    builder = StirBuilder(names, 1)
    for label, svg in enumerate(files):
        for scale in SCALES:
            icon = render_coverage(svg, scale)  # identical for the three splits
            for split in range(len(SPLITS)):
                left, top = (int(v) for v in rng.randint(0, CANVAS - scale + 1, 2))
                canvas = np.zeros((CANVAS, CANVAS), np.uint8)
                canvas[top : top + scale, left : left + scale] = icon
                builder.put(split, scale, label, 0, canvas, left, top)
    return builder.arrays(metadata(
        "Emoji",
        "36 Font Awesome face icons drawn white on black at object sizes 17 to 64 pixels, "
        "each at a random position inside a 64x64 image.",
        "CC BY 4.0; icons from Font Awesome Free 6 by @fontawesome - https://fontawesome.com "
        "(https://fontawesome.com/license/free)",
    ))
