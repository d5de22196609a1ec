"""Decode only the part of a JPEG that a crop reads: the same pixels as a full decode, for less work.

A random-resized crop reads on average about half of an image. Two ways, both in
the compiled helper (``_jpeg_window.c``, the module ``_raysys_jpeg_window``,
built by ``pip install`` where libjpeg's headers exist):

* **Whole MCUs** (the default for shards ``prepare`` wrote): :func:`with_restarts`
  rewrites each JPEG losslessly at prepare time with a restart marker after every
  MCU (the same DCT coefficients; optimised Huffman tables pay for the markers).
  Each MCU's entropy-coded data can then be found and decoded on its own, so a
  window costs only the MCUs it touches: the helper builds a small JPEG of those
  MCUs and decodes it.
* **Scanlines** (any other baseline or progressive JPEG): libjpeg-turbo stops after
  the crop's last row and skips the inverse DCT, upsampling and colour conversion
  of the rows above it (``jpeg_skip_scanlines``) and of the columns beside it
  (``jpeg_crop_scanline``); the entropy decoding of the rows above remains.

The pixels equal those of ``torchvision.io.decode_jpeg`` on the original file
(tests/test_jpeg_window.py, bit for bit). Fancy chroma upsampling computes the
first and last row and column of a decoded region differently, so those must lie
outside the window: an MCU more on a side where the window's edge falls on an MCU
boundary (whole MCUs), :data:`MARGIN` pixels above and beside it (scanlines).
Only the window is copied out: a contiguous channels-last image, which the resize
reads without a copy of its own.

Where the helper is missing, the image is not a YCbCr, RGB or grayscale JPEG,
or libjpeg reports anything (corrupt data), the caller decodes the image whole,
as before. ``RAYSYS_JPEG_WINDOW=0`` turns the helper off, in ``prepare`` (the
original bytes are stored) and in the stream (to compare, or to rule it out);
``bench data`` runs the stream both ways (``jpeg.ray_data_full``).
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import torch

try:
    # Top-level (pyproject.toml): a Ray working-dir copy of raysys, which has no build outputs,
    # still finds the one the node built.
    import _raysys_jpeg_window as _native
except ImportError:  # built without libjpeg's headers: every image is decoded whole
    _native = None

ENV = "RAYSYS_JPEG_WINDOW"
# One iMCU of 4:2:0 (16 px): no pixel of the window is then next to the decoded region's edge.
MARGIN = 16


def available() -> bool:
    """Whether the compiled helper was built."""
    return _native is not None


def enabled() -> bool:
    """Whether windows are decoded partially: the helper is built and ``RAYSYS_JPEG_WINDOW`` is not 0."""
    return _native is not None and os.environ.get(ENV, "1") != "0"


def with_restarts(data: bytes) -> bytes:
    """``data`` losslessly rewritten with a restart marker after every MCU; unchanged where off or impossible.

    The same DCT coefficients and quantisation tables, so every decoder gives the
    same pixels; Huffman tables are optimised, a progressive file becomes
    sequential, and metadata markers (EXIF, ICC, comments) are kept.
    """
    if not enabled():
        return data
    try:
        return _native.with_restarts(data)
    except ValueError:  # CMYK, or damage libjpeg warns about: stored as it is
        return data


def header(blob: torch.Tensor) -> Optional[Tuple[int, int]]:
    """(height, width) of an encoded JPEG this helper can decode partially; None otherwise, and where it is off."""
    if not enabled():
        return None
    try:
        height, width, plain = _native.header(blob.numpy())
    except ValueError:
        return None
    return (height, width) if plain else None


def decode(blob: torch.Tensor, top: int, left: int, height: int, width: int, image_height: int, image_width: int
           ) -> Optional[torch.Tensor]:
    """The window's RGB pixels as uint8 (3, height, width), a contiguous channels-last view; None if it cannot.

    ``image_height`` x ``image_width``: the image's size, from :func:`header`.
    """
    if not (0 <= top and top + height <= image_height and 0 <= left and left + width <= image_width):
        raise ValueError(f"window {height}x{width} at ({top}, {left}) is not inside a {image_height}x{image_width} image")
    try:
        data = _native.decode_rgb(blob.numpy(), top, left, height, width, MARGIN)
    except ValueError:
        return None
    return torch.frombuffer(data, dtype=torch.uint8).view(height, width, 3).permute(2, 0, 1)
