"""Convert a dataset from its original files into Parquet shards plus manifest."""

from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path
from typing import Any, Dict, Optional

from raysys.data.formats import DatasetSpec, get_dataset
from raysys.data.formats.base import require_dir
from raysys.data.shards import check_out, write_shards
from raysys.errors import ConfigError

log = logging.getLogger(__name__)


def check_arguments(*, rows_per_shard: Optional[int] = None, resize: int = 0) -> None:
    """ConfigError, naming the option, for a value prepare can never use."""
    if rows_per_shard is not None and (isinstance(rows_per_shard, bool) or rows_per_shard < 1):
        raise ConfigError(
            f"bad value for --rows-per-shard: {rows_per_shard} (must be >= 1; leave it out for shards of about 64 MiB)"
        )
    if resize < 0:
        raise ConfigError(f"bad value for --resize: {resize} (must be >= 0; 0 keeps the original size)")


def _reader_options(spec: DatasetSpec, resize: int, include_unlabeled: bool) -> Dict[str, Any]:
    """The options that were asked for, refusing those this dataset's reader lacks."""
    check_arguments(resize=resize)
    asked = {"resize": resize, "include_unlabeled": include_unlabeled}
    options = {name: value for name, value in asked.items() if value}
    accepted = inspect.signature(spec.reader).parameters
    for name in options:
        if name not in accepted:
            raise ConfigError(f"option {name!r} does not apply to dataset {spec.name}")
    return options


def prepare(
    dataset: str,
    source: str,
    out: str,
    *,
    overwrite: bool = False,
    rows_per_shard: Optional[int] = None,
    resize: int = 0,
    include_unlabeled: bool = False,
) -> dict:
    """Read ``dataset`` from its original files in ``source`` and write shards to ``out``.

    Every argument is checked before the source is read (a large source takes
    minutes to read), and nothing is written to ``out`` unless all of it is.
    Returns the manifest written to ``out``.
    """
    check_arguments(rows_per_shard=rows_per_shard, resize=resize)
    spec = get_dataset(dataset)
    options = _reader_options(spec, resize, include_unlabeled)
    source_dir = require_dir(Path(source).expanduser())
    check_out(out, overwrite=overwrite)  # fail before reading a large source
    started = time.perf_counter()
    source_dataset = spec.reader(source_dir, **options)
    counts = ", ".join(f"{split.name} {split.count}" for split in source_dataset.splits)
    log.info(
        "preparing %s from %s (%s): %s", spec.name, source_dir, source_dataset.source_format, counts
    )
    manifest = write_shards(source_dataset, out, rows_per_shard=rows_per_shard, overwrite=overwrite)
    shards = sum(len(split["shards"]) for split in manifest["splits"].values())
    elapsed = time.perf_counter() - started
    log.info("wrote %d shards of %s to %s in %.1f s", shards, spec.name, out, elapsed)
    return manifest
