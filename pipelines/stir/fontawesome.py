"""The Font Awesome Free 5.15.3 tarball the original STIR emoji were drawn from, fetched once and cached.

The original's ``data/gen_emoji.py`` rendered ``fontawesome/svgs/regular/<name>.svg``
of Font Awesome Free 5.15.3 (its metadata names the version). PyPI's
``fontawesomefree`` ships Font Awesome 6 drawings even at 5.15.3; the npm package
``@fortawesome/fontawesome-free@5.15.3`` holds the 5.15.3 glyphs. :func:`fetch`
brings its tarball into the cache (``npm pack`` when npm is on PATH, else a plain
download of the registry's tarball by name), checks it against the pinned sha512
(:data:`FONTAWESOME5`, the registry's ``dist.integrity``) and refuses any other file.

Cache: ``$RAYSYS_CACHE_DIR/fontawesome/`` (default ``~/.cache/raysys``; ``$XDG_CACHE_HOME/raysys``
when set). ``make install`` runs ``python -m raysys stir fetch-glyphs``.
Font Awesome Free icons are CC BY 4.0 (https://fontawesome.com/license/free).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional

from raysys.errors import DataError

NPM_REGISTRY = "https://registry.npmjs.org"
DOWNLOAD_TIMEOUT_S = 120


@dataclass(frozen=True)
class TarballPin:
    """An npm package version and the sha512 integrity its tarball must have."""

    package: str
    version: str
    integrity: str  # "sha512-<base64>", the registry's dist.integrity

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def file_name(self) -> str:
        """``npm pack``'s name for the tarball: ``fortawesome-fontawesome-free-5.15.3.tgz``."""
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


FONTAWESOME5 = TarballPin(
    "@fortawesome/fontawesome-free", "5.15.3",
    "sha512-rFnSUN/QOtnOAgqFRooTA3H57JLDm0QEG/jPdk+tLQNL/eWd+Aok8g3qCI+Q1xuDPWpGW/i9JySpJVsq8Q0s9w==",
)
ATTRIBUTION = "Font Awesome Free {version} by @fontawesome - https://fontawesome.com (License - https://fontawesome.com/license/free)"
REGULAR_SVGS = "package/svgs/regular"


def cache_dir() -> Path:
    """Where fetched tarballs are kept: ``$RAYSYS_CACHE_DIR`` (or the XDG cache) / fontawesome."""
    root = os.environ.get("RAYSYS_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = str(Path(xdg) / "raysys") if xdg else str(Path.home() / ".cache" / "raysys")
    return Path(root).expanduser() / "fontawesome"


def integrity_of(path: Path) -> str:
    """The npm integrity string (sha512, base64) of a file."""
    digest = hashlib.sha512(Path(path).read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def check_integrity(path: Path, pin: TarballPin) -> None:
    """DataError unless ``path`` has the pinned sha512."""
    found = integrity_of(path)
    if found != pin.integrity:
        raise DataError(f"{path} is not {pin.spec}: sha512 {found[:30]}... differs from the pinned "
                        f"{pin.integrity[:30]}... (corrupted or a different file; refused)")


def cached_tarball(pin: TarballPin = FONTAWESOME5) -> Optional[Path]:
    """The cached tarball of ``pin`` if present (its hash is checked when read), else None."""
    path = cache_dir() / pin.file_name
    return path if path.is_file() else None


def _npm_pack(pin: TarballPin, registry: str, folder: Path) -> Path:
    npm = shutil.which("npm")
    command = [npm, "pack", pin.spec, "--pack-destination", str(folder), "--registry", registry, "--silent"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    if done.returncode != 0:
        raise DataError(f"npm pack {pin.spec} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    return folder / pin.file_name


def _download(pin: TarballPin, registry: str, folder: Path) -> Path:
    """The tarball named by the registry's metadata of ``pin`` (GET <registry>/<package>/<version>)."""
    meta_url = f"{registry.rstrip('/')}/{urllib.parse.quote(pin.package, safe='@')}/{pin.version}"
    try:
        with urllib.request.urlopen(meta_url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            dist = json.load(response)["dist"]
        if dist.get("integrity") != pin.integrity:
            raise DataError(f"the registry at {registry} lists {pin.spec} with integrity "
                            f"{str(dist.get('integrity'))[:30]}..., not the pinned {pin.integrity[:30]}...")
        target = folder / pin.file_name
        with urllib.request.urlopen(dist["tarball"], timeout=DOWNLOAD_TIMEOUT_S) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"could not download {pin.spec} from {registry}: {error}") from None
    return target


def fetch(pin: TarballPin = FONTAWESOME5, *, registry: str = NPM_REGISTRY, use_npm: Optional[bool] = None) -> Path:
    """The cached tarball of ``pin``: fetched if absent, hash-checked either way.

    ``use_npm``: None = npm when it is on PATH. A download whose hash is not the
    pin's is refused and not cached.
    """
    target = cache_dir() / pin.file_name
    if target.is_file():
        check_integrity(target, pin)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    npm = shutil.which("npm") is not None if use_npm is None else use_npm
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as scratch:
        fetched = (_npm_pack if npm else _download)(pin, registry, Path(scratch))
        check_integrity(fetched, pin)
        os.replace(fetched, target)
    return target


@lru_cache(maxsize=4)
def regular_svgs(tarball: Path, pin: TarballPin = FONTAWESOME5) -> Dict[str, bytes]:
    """{icon name: SVG bytes} of ``svgs/regular/`` in the tarball (hash-checked first)."""
    check_integrity(tarball, pin)
    svgs = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            folder, _, name = member.name.rpartition("/")
            if folder == REGULAR_SVGS and name.endswith(".svg") and member.isfile():
                svgs[name[: -len(".svg")]] = archive.extractfile(member).read()
    if not svgs:
        raise DataError(f"{tarball} has no {REGULAR_SVGS}/*.svg")
    return svgs
