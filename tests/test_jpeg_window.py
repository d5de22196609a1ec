"""Decoding only a crop's window (raysys/data/jpeg_window.py): the same pixels as a full decode, bit for bit."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from raysys.bench.fixtures import smooth_image
from raysys.data import jpeg_window
from raysys.data.jpeg import decode_batch, random_resized_params
from raysys.errors import DataError

needs_helper = pytest.mark.skipif(not jpeg_window.available(), reason="_raysys_jpeg_window was not built")

# name -> Pillow save options (and image mode)
ENCODINGS = {
    "4:4:4": dict(subsampling=0),
    "4:2:2": dict(subsampling=1),
    "4:2:0": dict(subsampling=2),
    "progressive": dict(subsampling=2, progressive=True),
    "restart markers": dict(subsampling=2, restart_marker_rows=1),
    "grayscale": dict(mode="L"),
}


def encoded(width: int, height: int, seed: int = 0, mode: str = "RGB", noise: bool = False, **save) -> torch.Tensor:
    """A JPEG: photo-like, or (``noise``) random colours, where any upsampling difference shows."""
    rng = np.random.default_rng(seed)
    if noise:
        picture = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    else:
        picture = smooth_image(width, height, rng)
    out = io.BytesIO()
    picture.convert(mode).save(out, format="JPEG", quality=90, **save)
    return torch.frombuffer(bytearray(out.getvalue()), dtype=torch.uint8)


def full_decode(blob: torch.Tensor) -> torch.Tensor:
    return decode_jpeg(blob, mode=ImageReadMode.RGB)


def windows(height: int, width: int, count: int, seed: int):
    """Random-resized crops; edges on, beside and between MCU boundaries; the image's corners and extremes."""
    generator = torch.Generator().manual_seed(seed)
    yield from (random_resized_params(height, width, generator) for _ in range(count))
    edges = (0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33)
    for start in edges:
        for stop in edges:
            if start + stop + 1 < min(height, width):
                yield start, start, height - start - stop, width - start - stop  # inset from each edge
                yield start, stop, min(height - start, stop + 1), min(width - stop, start + 1)
    yield from [
        (0, 0, 1, 1), (height - 1, width - 1, 1, 1), (0, 0, height, width), (1, 1, height - 1, width - 1),
        (0, width // 2, height, width - width // 2), (height // 2, 0, height - height // 2, width),
        (height // 3, width // 3, 1, width // 3), (0, 0, height, 1),
    ]


def test_the_helper_is_built_where_libjpeg_headers_exist():
    """make install builds it (the Makefile installs libjpeg62-turbo-dev as root): a missing build is not silent."""
    if Path("/usr/include/jpeglib.h").exists():
        assert jpeg_window.available()


@needs_helper
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
# (323, 244): a last MCU column 3 px wide and row 4 px high
@pytest.mark.parametrize("size", [(500, 375), (333, 251), (323, 244), (17, 9)])
def test_a_window_has_the_pixels_of_a_full_decode(encoding, size):
    options = dict(ENCODINGS[encoding])
    blob = encoded(*size, seed=len(encoding), mode=options.pop("mode", "RGB"), noise=True, **options)
    full = full_decode(blob)
    height, width = full.shape[-2:]
    assert jpeg_window.header(blob) == (height, width)
    for top, left, h, w in windows(height, width, 40, seed=size[0]):
        pixels = jpeg_window.decode(blob, top, left, h, w, height, width)
        assert pixels is not None and pixels.shape == (3, h, w)
        assert torch.equal(pixels, full[:, top : top + h, left : left + w]), (top, left, h, w)


@needs_helper
@pytest.mark.parametrize("crop", ["random-resized", "center"])
def test_batches_are_the_same_with_the_helper_on_and_off(crop, monkeypatch):
    blobs = [encoded(480 + 9 * n, 360 - 7 * n, seed=n, **ENCODINGS[name]) for n, name in
             enumerate(["4:2:0", "4:4:4", "4:2:2", "progressive", "4:2:0"])]
    blobs.append(encoded(400, 300, seed=9, mode="CMYK"))  # not YCbCr: decoded whole either way
    column = pa.array([bytes(blob.numpy()) for blob in blobs], pa.binary())
    on = decode_batch(column, 64, crop, torch.Generator().manual_seed(5))
    monkeypatch.setenv(jpeg_window.ENV, "0")
    assert not jpeg_window.enabled()
    off = decode_batch(column, 64, crop, torch.Generator().manual_seed(5))
    assert on.shape == (6, 3, 64, 64) and torch.equal(on, off)


@needs_helper
def test_images_it_cannot_decode_fall_back_to_a_full_decode():
    cmyk = encoded(64, 48, mode="CMYK")
    assert jpeg_window.header(cmyk) is None  # CMYK: torchvision converts it; the helper does not try
    assert jpeg_window.header(torch.frombuffer(bytearray(b"not a jpeg"), dtype=torch.uint8)) is None
    blob = encoded(160, 120)
    truncated = blob[: blob.numel() // 2].clone()  # libjpeg warns: the helper declines, a full decode decides
    assert jpeg_window.decode(truncated, 80, 0, 30, 60, 120, 160) is None
    with pytest.raises(ValueError, match="not inside"):
        jpeg_window.decode(blob, 100, 0, 30, 60, 120, 160)


def test_bad_bytes_are_a_data_error_as_before():
    with pytest.raises(DataError, match="cannot decode a JPEG image"):
        decode_batch(pa.array([b"not a jpeg"], pa.binary()), 32, "random-resized", torch.Generator())


@needs_helper
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("size", [(333, 251), (323, 244), (17, 9)])
def test_restart_markers_keep_the_pixels_and_windows_decode_from_the_mcus_around_them(encoding, size):
    """What ``prepare`` stores: losslessly rewritten, and every window equal to the original's full decode."""
    options = dict(ENCODINGS[encoding])
    original = encoded(*size, seed=3, mode=options.pop("mode", "RGB"), noise=True, **options)
    stored = jpeg_window.with_restarts(bytes(original.numpy()))
    blob = torch.frombuffer(bytearray(stored), dtype=torch.uint8)
    full = full_decode(original)
    assert torch.equal(full_decode(blob), full)
    assert len(stored) < 1.15 * original.numel() + 2000  # a marker per MCU (8 x 8 px in grayscale), optimised tables
    height, width = full.shape[-2:]
    for top, left, h, w in windows(height, width, 40, seed=7):
        pixels = jpeg_window.decode(blob, top, left, h, w, height, width)
        assert torch.equal(pixels, full[:, top : top + h, left : left + w]), (top, left, h, w)


@needs_helper
def test_a_window_reads_only_the_mcus_around_it():
    """Damage above the window's MCUs does not reach it: that data is not even entropy-decoded."""
    original = encoded(320, 240, seed=5)
    stored = bytearray(jpeg_window.with_restarts(bytes(original.numpy())))
    full = full_decode(original)
    scan = stored.index(b"\xff\xda")
    scan += 2 + int.from_bytes(stored[scan + 2 : scan + 4], "big")
    for at in range(scan + 40, scan + 400):  # inside the first MCU row (20 MCUs of 16 x 16 px)
        if stored[at] != 0xFF and stored[at - 1] != 0xFF and stored[at] ^ 0x55 != 0xFF:
            stored[at] ^= 0x55  # no marker made or broken: only entropy-coded bits change
    damaged = torch.frombuffer(stored, dtype=torch.uint8)
    pixels = jpeg_window.decode(damaged, 120, 50, 100, 200, 240, 320)
    assert torch.equal(pixels, full[:, 120:220, 50:250])
    assert not torch.equal(full_decode(damaged), full)  # a full decode does read it


def test_with_restarts_leaves_what_it_cannot_rewrite(monkeypatch):
    cmyk = bytes(encoded(64, 48, mode="CMYK").numpy())
    assert jpeg_window.with_restarts(cmyk) == cmyk
    assert jpeg_window.with_restarts(b"not a jpeg") == b"not a jpeg"
    monkeypatch.setenv(jpeg_window.ENV, "0")
    plain = bytes(encoded(64, 48).numpy())
    assert jpeg_window.with_restarts(plain) == plain
