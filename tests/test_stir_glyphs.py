"""STIR emoji glyphs: the pinned Font Awesome 5.15.3 tarball (pipelines/stir/fontawesome.py) and the glyph sets.

The fetch is tested against a loopback npm registry (no network); generation
from the real tarball runs where ``make install`` cached it.
"""
from __future__ import annotations

import dataclasses
import http.server
import io
import json
import tarfile
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from pipelines.stir import fontawesome
from pipelines.stir.emoji import ICON_NAMES, emoji_svgs, render_coverage
from raysys.errors import DataError

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 496 512"><circle cx="248" cy="256" r="200"/></svg>'


def _tarball(names) -> bytes:
    """A small npm-style tarball: package/svgs/regular/<name>.svg."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in names:
            info = tarfile.TarInfo(f"package/svgs/regular/{name}.svg")
            info.size = len(SVG)
            archive.addfile(info, io.BytesIO(SVG))
    return buffer.getvalue()


def _integrity(data: bytes) -> str:
    import base64
    import hashlib

    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.fixture
def registry():
    """A loopback npm registry: {"tarball": bytes served, "integrity": what the metadata lists}; yields its URL."""
    served = {"tarball": b"", "integrity": "", "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            path = urllib.parse.unquote(self.path)  # npm clients send @scope%2fname
            served["requests"].append(path)
            if path == "/@fortawesome/fontawesome-free/5.15.3":
                url = f"http://127.0.0.1:{self.server.server_port}/tarballs/fontawesome-free-5.15.3.tgz"
                body = json.dumps({"dist": {"integrity": served["integrity"], "tarball": url}}).encode()
            elif path.startswith("/tarballs/"):
                body = served["tarball"]
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served["url"] = f"http://127.0.0.1:{server.server_port}"
    yield served
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RAYSYS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fontawesome"


def test_fetch_checks_the_pinned_hash_and_caches(registry, cache):
    data = _tarball(ICON_NAMES)
    pin = dataclasses.replace(fontawesome.FONTAWESOME5, integrity=_integrity(data))
    registry.update(tarball=data, integrity=pin.integrity)
    path = fontawesome.fetch(pin, registry=registry["url"], use_npm=False)
    assert path == cache / "fortawesome-fontawesome-free-5.15.3.tgz" and path.read_bytes() == data
    assert fontawesome.cached_tarball(pin) == path
    registry["requests"].clear()
    assert fontawesome.fetch(pin, registry=registry["url"], use_npm=False) == path
    assert registry["requests"] == []  # cached: no request
    svgs = fontawesome.regular_svgs(path, pin)
    assert set(svgs) == set(ICON_NAMES) and svgs["tired"] == SVG


def test_a_corrupted_tarball_is_refused_and_not_cached(registry, cache):
    good = _tarball(ICON_NAMES)
    pin = dataclasses.replace(fontawesome.FONTAWESOME5, integrity=_integrity(good))
    registry.update(tarball=good[:-10] + b"corrupted!", integrity=pin.integrity)
    with pytest.raises(DataError, match="is not @fortawesome/fontawesome-free@5.15.3: sha512 .* refused"):
        fontawesome.fetch(pin, registry=registry["url"], use_npm=False)
    assert not any(cache.iterdir())  # nothing cached, no scratch left
    registry.update(tarball=good, integrity=_integrity(b"another version"))
    with pytest.raises(DataError, match="lists @fortawesome/fontawesome-free@5.15.3 with integrity"):
        fontawesome.fetch(pin, registry=registry["url"], use_npm=False)
    (cache / pin.file_name).write_bytes(b"tampered")  # a cached file is checked too
    with pytest.raises(DataError, match="refused"):
        fontawesome.fetch(pin, registry=registry["url"], use_npm=False)


def test_emoji_without_the_cached_tarball_says_how_to_fetch_it(cache):
    with pytest.raises(DataError, match="stir fetch-glyphs.*--glyphs fontawesome6"):
        emoji_svgs("fontawesome5")


def test_the_pin_is_the_registrys_5_15_3_tarball():
    pin = fontawesome.FONTAWESOME5
    assert pin.spec == "@fortawesome/fontawesome-free@5.15.3"
    assert pin.integrity.startswith("sha512-rFnSUN/QOtnOAgqFRooTA3H57JLDm0QEG")


@pytest.mark.skipif(fontawesome.cached_tarball() is None, reason="Font Awesome 5.15.3 not cached (make install)")
def test_fontawesome5_glyphs_come_from_the_cached_tarball():
    fa5, fa6 = emoji_svgs("fontawesome5"), emoji_svgs("fontawesome6")
    assert list(fa5) == list(ICON_NAMES)
    assert all(b"Font Awesome Free 5.15.3" in svg for svg in fa5.values())
    assert b'viewBox="0 0 496 512"' in fa5["tired"] and b'viewBox="0 0 640 512"' in fa5["grin-tears"]
    five, six = render_coverage(fa5["grin-alt"], 48), render_coverage(fa6["grin-alt"], 48)
    assert five.shape == (48, 48) and five.max() == 255 and np.mean(five != six) > 0.05  # FA 6 redrew the faces
