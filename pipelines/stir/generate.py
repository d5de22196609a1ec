"""``stir generate`` and ``stir shards``: build or convert a STIR dataset, then write it."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from pipelines.stir import aerial, emoji, mnist, trafficsign  # noqa: F401  (register the sources)
from pipelines.stir.sources import STIR_SOURCES
from pipelines.stir.writer import write_outputs
from raysys.data.formats.stir_npz import find_npz, load_npz
from raysys.data.shards import check_out
from raysys.errors import DataError

log = logging.getLogger(__name__)
DEFAULT_SEED = 42  # the seed of the original generators


def generate(
    name: str,
    out: str,
    *,
    source: Optional[str] = None,
    seed: int = DEFAULT_SEED,
    instances: Optional[int] = None,
    overwrite: bool = False,
    rows_per_shard: Optional[int] = None,
    glyphs: Optional[str] = None,
) -> dict:
    """Generate STIR ``name`` into ``out`` (npz + shards); returns the manifest.

    ``glyphs`` (emoji only): ``fontawesome5`` (default, the original's) or ``fontawesome6``.
    """
    spec = STIR_SOURCES.get(name)
    if spec.needs_source and not source:
        raise DataError(f"STIR {spec.name} needs --source: {spec.description}")
    given = {"glyphs": glyphs} if glyphs else {}
    for option in given:
        if option not in spec.options:
            raise DataError(f"--{option} is an option of STIR emoji only, not of {spec.name}")
    build_options = {**spec.options, **given}
    source_path = Path(source).expanduser() if source else None
    if source_path is not None and not source_path.exists():
        raise DataError(f"source {source_path} does not exist")
    check_out(out, overwrite=overwrite)  # fail before a long generation
    started = time.perf_counter()
    arrays = spec.build(source_path, seed, instances, **build_options)
    log.info("generated STIR %s: %s images in %.1f s", spec.name, arrays.imgs.shape, time.perf_counter() - started)
    options = {"generator": {"source": spec.name, "seed": seed, "instances": arrays.instances, **build_options}}
    return write_outputs(arrays, spec.name, out, overwrite=overwrite, rows_per_shard=rows_per_shard, options=options)


def convert(npz: str, out: str, *, name: Optional[str] = None, overwrite: bool = False,
            rows_per_shard: Optional[int] = None) -> dict:
    """Write shards (and a copy of the npz) for an existing original-layout STIR npz file."""
    path = Path(npz).expanduser()
    stem = name or path.stem
    if stem not in STIR_SOURCES:
        raise DataError(f"cannot tell which STIR dataset {path} holds: pass --name (one of {STIR_SOURCES.names()})")
    check_out(out, overwrite=overwrite)
    arrays = load_npz(find_npz(path, stem))
    return write_outputs(arrays, stem, out, overwrite=overwrite, rows_per_shard=rows_per_shard,
                         options={"converted_from": str(path)})
