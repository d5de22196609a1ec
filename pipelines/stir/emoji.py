"""STIR emoji: the original's 36 Font Awesome "regular" faces, white on black.

The original (``data/gen_emoji.py``) rendered Font Awesome Free 5.15.3's
``svgs/regular/<name>.svg``. The default glyph set, ``fontawesome5``, reads
those SVGs from the npm tarball ``@fortawesome/fontawesome-free@5.15.3``,
cached and hash-checked by :mod:`pipelines.stir.fontawesome` (``make install``
fetches it; ``python -m raysys stir fetch-glyphs``), and reproduces the
original file's arrays. ``--glyphs fontawesome6`` draws the Font Awesome 6
faces of the PyPI package ``fontawesomefree`` instead (renamed, and drawn
differently); :data:`ICON_NAMES` maps each original name (kept as the class
name, in the original class order) to its Font Awesome 6 file. Each icon is
rendered by cairosvg at s x s and its coverage (alpha) becomes the grey value
(what the original's white-over-black composite and greyscale give), placed at
a random position inside the 64x64 canvas.

Random positions use ``numpy.random.RandomState(seed)`` drawn in the
original's order (icon, scale from 64 down, split), so ``--seed 42`` places
every icon where the original file has it.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

from pipelines.stir import fontawesome
from pipelines.stir.sources import register_source
from pipelines.stir.writer import StirBuilder, metadata
from raysys.data.formats.stir_npz import CANVAS, SCALES, SPLITS, StirArrays
from raysys.errors import DataError
from raysys.registry import Registry

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


@dataclass(frozen=True)
class GlyphSet:
    """Where a set of emoji SVGs comes from: ``load(source)`` -> {original name: SVG bytes}, and its credit."""

    name: str
    load: Callable[[Optional[Path]], Dict[str, bytes]]
    attribution: str  # the Font Awesome credit CC BY 4.0 asks for
    description: str


GLYPHS: "Registry[GlyphSet]" = Registry("STIR emoji glyph set", discover=False)
DEFAULT_GLYPHS = "fontawesome5"


def fontawesome_svgs() -> Path:
    """The folder of Font Awesome 6 "regular" SVGs shipped by ``fontawesomefree``."""
    try:
        import fontawesomefree
    except ImportError:
        raise DataError("STIR emoji --glyphs fontawesome6 needs the package fontawesomefree "
                        "(pip install fontawesomefree)") from None
    folder = Path(fontawesomefree.__file__).parent / "static" / "fontawesomefree" / "svgs" / "regular"
    if not folder.is_dir():
        raise DataError(f"fontawesomefree has no SVG folder {folder}")
    return folder


def _svg_folder(source: Path) -> Path:
    """``source`` (a folder of regular SVGs, or Font Awesome's ``svgs/`` folder)."""
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


def _from_folder(folder: Path) -> Dict[str, bytes]:
    return {name: _svg_file(folder, name).read_bytes() for name in ICON_NAMES}


def _from_tarball(tarball: Path) -> Dict[str, bytes]:
    svgs = fontawesome.regular_svgs(Path(tarball))
    missing = [name for name in ICON_NAMES if name not in svgs]
    if missing:
        raise DataError(f"{tarball} has no svgs/regular/ for emoji {missing}")
    return {name: svgs[name] for name in ICON_NAMES}


def _fontawesome5(source: Optional[Path]) -> Dict[str, bytes]:
    """The 5.15.3 tarball: ``source`` (a .tgz or an SVG folder) or the cached one."""
    if source is not None:
        return _from_tarball(source) if Path(source).is_file() else _from_folder(_svg_folder(source))
    tarball = fontawesome.cached_tarball()
    if tarball is None:
        raise DataError(f"STIR emoji needs {fontawesome.FONTAWESOME5.spec} in {fontawesome.cache_dir()}: run "
                        "`python -m raysys stir fetch-glyphs` (make install does), or pass --glyphs fontawesome6")
    return _from_tarball(tarball)


def _fontawesome6(source: Optional[Path]) -> Dict[str, bytes]:
    return _from_folder(_svg_folder(source) if source is not None else fontawesome_svgs())


GLYPHS.add("fontawesome5", GlyphSet(
    "fontawesome5", _fontawesome5, fontawesome.ATTRIBUTION.format(version="5.15.3"),
    "Font Awesome Free 5.15.3, the original's (npm tarball, cached)"))
GLYPHS.add("fontawesome6", GlyphSet(
    "fontawesome6", _fontawesome6, fontawesome.ATTRIBUTION.format(version="6"),
    "Font Awesome Free 6 (PyPI fontawesomefree; redrawn glyphs)"))


def offline_glyphs() -> str:
    """The original's glyphs when cached, else Font Awesome 6: for benchmarks and tests, whose pixels do not matter."""
    return DEFAULT_GLYPHS if fontawesome.cached_tarball() is not None else "fontawesome6"


def emoji_svgs(glyphs: str = DEFAULT_GLYPHS, source: Optional[Path] = None) -> Dict[str, bytes]:
    """{original emoji name: SVG bytes} of the 36 faces, in the original class order."""
    return GLYPHS.get(glyphs).load(source)


def render_coverage(svg: bytes, scale: int) -> np.ndarray:
    """The icon's alpha channel rendered at scale x scale: uint8 (scale, scale)."""
    import cairosvg
    from PIL import Image

    png = cairosvg.svg2png(bytestring=svg, parent_width=scale, parent_height=scale)
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    if image.size != (scale, scale):
        raise DataError(f"an emoji SVG rendered at {image.size}, expected {scale}x{scale}")
    return np.asarray(image)[..., 3]


@register_source("emoji", needs_source=False, instances=1, options={"glyphs": DEFAULT_GLYPHS},
                 description="36 Font Awesome regular faces (Font Awesome Free 5.15.3 + cairosvg)")
def build_emoji(source: Optional[Path], seed: int, instances: Optional[int],
                glyphs: str = DEFAULT_GLYPHS) -> StirArrays:
    if instances not in (None, 1):
        raise DataError(f"STIR emoji has exactly 1 instance per class, got --instances {instances}")
    glyph_set = GLYPHS.get(glyphs)
    svgs = glyph_set.load(source)
    names = list(ICON_NAMES)
    rng = np.random.RandomState(seed)
    builder = StirBuilder(names, 1)
    for label, name in enumerate(names):
        for scale in SCALES:
            icon = render_coverage(svgs[name], scale)  # identical for the three splits
            for split in range(len(SPLITS)):
                left, top = (int(v) for v in rng.randint(0, CANVAS - scale + 1, 2))
                canvas = np.zeros((CANVAS, CANVAS), np.uint8)
                canvas[top : top + scale, left : left + scale] = icon
                builder.put(split, scale, label, 0, canvas, left, top)
    return builder.arrays(metadata(
        "Emoji",
        "36 Font Awesome face icons drawn white on black at object sizes 17 to 64 pixels, "
        "each at a random position inside a 64x64 image.",
        f"CC BY 4.0 modified from {glyph_set.attribution}",
    ))
