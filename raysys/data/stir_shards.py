"""STIR arrays back from a shards folder: the inverse of ``raysys stir generate`` / ``stir shards``.

Reads shards (:mod:`raysys.data.shards`), so it lives beside them rather than with the npz
reader in :mod:`raysys.data.formats.stir_npz`, which the shard writer's dataset formats import.
"""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from raysys.data.formats.stir_npz import CANVAS, METADATA_KEYS, SCALES, SPLITS, StirArrays
from raysys.data.shards import decode_raw, load_manifest, shard_files
from raysys.errors import DataError


def load_shards(path: str) -> StirArrays:
    """The STIR arrays back from a shards folder written by ``stir generate`` / ``stir shards``.

    Rows are put back by their ``index``; the latents come from the extra
    columns, class names and metadata from the manifest.
    """
    manifest = load_manifest(path)
    stir = manifest.get("options", {}).get("stir")
    if not stir or manifest.get("image", {}).get("height") != CANVAS:
        raise DataError(f"{path} does not hold STIR shards (no 'stir' entry in its manifest)")
    n, m, channels = manifest["num_classes"], int(stir["instances"]), int(manifest["image"]["channels"])
    grid = (len(SCALES), n, m)
    parts = {key: [] for key in ("imgs", "lbls", "scls", "psts")}
    for split in SPLITS:
        table = pq.read_table(shard_files(path, manifest, split)).sort_by("index")
        images = decode_raw(table.column("image"), (CANVAS, CANVAS, channels))
        parts["imgs"].append(images.reshape(grid + ((CANVAS, CANVAS) if channels == 1 else (CANVAS, CANVAS, 3))))
        parts["lbls"].append(table.column("label").to_numpy().reshape(grid))
        parts["scls"].append(table.column("scale").to_numpy().reshape(grid))
        left, top = table.column("left").to_numpy(), table.column("top").to_numpy()
        parts["psts"].append(np.stack([left, top], axis=1).reshape(grid + (2,)))
    meta = manifest["options"].get("metadata", {})
    return StirArrays(
        **{key: np.stack(values) for key, values in parts.items()},
        metadata=np.array([[key, meta.get(key, "")] for key in METADATA_KEYS]),
        lbldata=np.array(manifest["classes"]),
    ).check(path)
