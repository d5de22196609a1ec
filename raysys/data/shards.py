"""Parquet shards of a prepared dataset: the atomic writer and the read-time checks.

A shards directory holds ``<split>-00000-of-00004.parquet`` files with the
columns ``image`` (binary), ``label`` (int64) and ``index`` (int64, the row's
position in its split), plus ``manifest.json``, written last. A directory
without a manifest is never read, so an interrupted prepare cannot be
mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

import raysys
from raysys.data.formats.base import SourceDataset, SplitSource
from raysys.errors import DataError, one_of

MANIFEST_NAME = "manifest.json"
FORMAT = "raysys-shards"
VERSION = 1
ENCODINGS = ("raw", "jpeg")
UNLABELED = -1  # the label of every row of an "unlabeled" split

SCHEMA = pa.schema([("image", pa.binary()), ("label", pa.int64()), ("index", pa.int64())])
TARGET_SHARD_BYTES = 64 * 2**20
ROW_GROUP_BYTES = 16 * 2**20
JPEG_ROWS_PER_SHARD = 1024
JPEG_ROWS_PER_GROUP = 128
# Raw pixels: uncompressed pages decode fastest and pixel data barely shrinks
# (Fashion-MNIST's zero background aside). JPEG bytes do not compress at all.
COMPRESSION = "none"
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")
_HASH_BLOCK = 8 * 2**20
_SHARD_KEYS = frozenset({"file", "rows", "bytes", "sha256"})
# verify_shards reads every page of local shards up to this many bytes (the splits it checks,
# together): a damaged page then fails on the driver naming its shard, not in a Ray Data read
# task minutes in. Datasets this small are read whole at start anyway (stream.CACHE_LIMIT_BYTES).
READ_CHECK_BYTES = 1 << 30


def _one_line(err: BaseException) -> str:
    """An error's text on one line (Arrow's messages span several)."""
    return " ".join(str(err).split()) or type(err).__name__


# ---- filesystems -----------------------------------------------------------


def _is_uri(path: str) -> bool:
    return "://" in str(path)


@contextmanager
def _io_errors(what: str) -> Iterator[None]:
    """Turn filesystem and Arrow errors into a one-line DataError about ``what``."""
    try:
        yield
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"cannot read {what}: {_one_line(err)}") from None


def _filesystem(path: str) -> Tuple[pafs.FileSystem, str]:
    """(filesystem, path within it) for a local path (absolute or relative) or a URI."""
    with _io_errors(path):
        fs, inner = pafs.FileSystem.from_uri(str(path) if _is_uri(path) else os.path.abspath(path))
    return fs, inner.rstrip("/") or "/"


def _join(path: str, name: str) -> str:
    return f"{str(path).rstrip('/')}/{name}" if _is_uri(path) else os.path.join(path, name)


def _local_dir(out: str) -> Path:
    if str(out).startswith("file://"):
        return Path(str(out)[len("file://") :])
    if _is_uri(out):
        raise DataError(
            f"cannot write shards to {out}: only local paths are supported; "
            "prepare locally, then copy the folder (manifest.json last)"
        )
    return Path(out)


# ---- checking what a reader yields -----------------------------------------


def _check_dataset(dataset: SourceDataset) -> None:
    if dataset.encoding not in ENCODINGS:
        raise DataError(f"dataset {dataset.name}: encoding {one_of(dataset.encoding, ENCODINGS)}")
    if dataset.encoding == "raw" and (dataset.image_shape is None or len(dataset.image_shape) != 3):
        raise DataError(
            f"dataset {dataset.name}: raw images need an (H, W, C) image_shape, got {dataset.image_shape}"
        )
    if not dataset.classes:
        raise DataError(f"dataset {dataset.name} has no classes")
    names = [split.name for split in dataset.splits]
    if not names:
        raise DataError(f"dataset {dataset.name} has no splits")
    _check_extra_columns(dataset)
    for name in names:
        if not _SPLIT_NAME.fullmatch(name):
            raise DataError(
                f"dataset {dataset.name}: split name {name!r} must be letters, digits or '_'"
            )
    if len(set(names)) != len(names):
        raise DataError(f"dataset {dataset.name}: split names repeat: {names}")


def _check_extra_columns(dataset: SourceDataset) -> None:
    """Extra columns: the same names in every split, one int value per row, no clash."""
    names = sorted(dataset.splits[0].columns)
    for split in dataset.splits:
        if sorted(split.columns) != names:
            raise DataError(
                f"dataset {dataset.name}: split {split.name!r} has extra columns "
                f"{sorted(split.columns)}, expected {names} like split {dataset.splits[0].name!r}"
            )
        for name, values in split.columns.items():
            values = np.asarray(values)
            if name in SCHEMA.names or not _SPLIT_NAME.fullmatch(name):
                raise DataError(f"dataset {dataset.name}: invalid extra column name {name!r}")
            if values.shape != (split.count,) or not np.issubdtype(values.dtype, np.integer):
                raise DataError(
                    f"dataset {dataset.name} split {split.name!r}: extra column {name!r} is "
                    f"{values.dtype} {values.shape}, expected integers ({split.count},)"
                )


def _schema(extra: Sequence[str] = ()) -> pa.Schema:
    """SCHEMA plus the int64 extra columns ``extra``."""
    return pa.schema(list(SCHEMA) + [(name, pa.int64()) for name in extra])


def _checked_chunk(
    dataset: SourceDataset, split: str, images: Any, labels: Any, start: int
) -> Tuple[Union[np.ndarray, List[bytes]], np.ndarray]:
    """The chunk with int64 labels, or DataError on wrong shapes, types or labels."""
    labels = np.asarray(labels)
    where = f"dataset {dataset.name} split {split!r} rows {start}..{start + len(labels) - 1}"
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise DataError(f"{where}: labels are {labels.dtype} {labels.shape}, expected int64 (n,)")
    labels = labels.astype(np.int64, copy=False)
    if dataset.encoding == "raw":
        expected = tuple(dataset.image_shape)
        if (
            not isinstance(images, np.ndarray)
            or images.dtype != np.uint8
            or images.shape[1:] != expected
        ):
            found = (
                f"{images.dtype} {images.shape}"
                if isinstance(images, np.ndarray)
                else type(images).__name__
            )
            raise DataError(
                f"{where}: images are {found}, expected uint8 (n, {', '.join(map(str, expected))})"
            )
    else:
        images = list(images)
        if not all(isinstance(image, bytes) and image for image in images):
            raise DataError(f"{where}: images must be non-empty encoded bytes")
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
    low = UNLABELED if split == "unlabeled" else 0
    if labels.size and (labels.min() < low or labels.max() >= len(dataset.classes)):
        raise DataError(
            f"{where}: labels range {labels.min()}..{labels.max()}, expected {low}..{len(dataset.classes) - 1}"
        )
    return images, labels


# ---- statistics --------------------------------------------------------------


class _ChannelStats:
    """Exact per-channel mean and std of uint8 images, from 256-bin histograms."""

    def __init__(self, channels: int):
        self.histograms = np.zeros((channels, 256), dtype=np.int64)

    def update(self, images: np.ndarray) -> None:
        planes = np.ascontiguousarray(images.reshape(-1, self.histograms.shape[0]).T)
        for channel, plane in enumerate(planes):
            self.histograms[channel] += np.bincount(plane, minlength=256)

    def mean_std(self) -> Tuple[Optional[List[float]], Optional[List[float]]]:
        total = self.histograms.sum(axis=1)
        if not total.all():
            return None, None
        values = np.arange(256, dtype=np.float64) / 255.0
        mean = self.histograms @ values / total
        var = self.histograms @ values**2 / total - mean**2
        return [round(float(m), 6) for m in mean], [
            round(float(s), 6) for s in np.sqrt(np.maximum(var, 0.0))
        ]


# ---- writing -----------------------------------------------------------------


def _concat(parts: List[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [item for part in parts for item in part]


def _regroup(
    chunks: Iterator[Tuple[Any, np.ndarray]], sizes: Sequence[int], split: SplitSource
) -> Iterator[Tuple[Any, np.ndarray]]:
    """Re-cut a stream of (images, labels) chunks into pieces of exactly ``sizes`` rows."""
    images: List[Any] = []
    labels: List[np.ndarray] = []
    buffered = 0
    wanted = iter(sizes)
    size = next(wanted, None)
    seen = 0
    for chunk_images, chunk_labels in chunks:
        images.append(chunk_images)
        labels.append(chunk_labels)
        buffered += len(chunk_labels)
        seen += len(chunk_labels)
        while size is not None and buffered >= size:
            all_images, all_labels = _concat(images), np.concatenate(labels)
            yield all_images[:size], all_labels[:size]
            images, labels = [all_images[size:]], [all_labels[size:]]
            buffered -= size
            size = next(wanted, None)
        if size is None and buffered:
            raise DataError(
                f"split {split.name!r} yields more than its declared {split.count} rows"
            )
    if size is not None:
        raise DataError(f"split {split.name!r} yields {seen} rows, expected {split.count}")


def _image_column(images: Any) -> pa.Array:
    if isinstance(images, np.ndarray):
        rows = len(images)
        row_bytes = int(np.prod(images.shape[1:]))
        offsets = np.arange(rows + 1, dtype=np.int64) * row_bytes
        if offsets[-1] >= 2**31:
            raise DataError(f"a row group of {offsets[-1]} bytes is too large for a binary column")
        data = np.ascontiguousarray(images).reshape(-1)
        return pa.Array.from_buffers(
            pa.binary(), rows, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
        )
    return pa.array(images, type=pa.binary())


def _table(
    images: Any, labels: np.ndarray, start: int, extra: Optional[Dict[str, np.ndarray]] = None
) -> pa.Table:
    index = np.arange(start, start + len(labels), dtype=np.int64)
    extra = extra or {}
    columns = [pa.array(np.asarray(values[start : start + len(labels)], np.int64)) for values in extra.values()]
    return pa.Table.from_arrays(
        [_image_column(images), pa.array(labels), pa.array(index), *columns], schema=_schema(list(extra))
    )


def _hash_and_sync(path: Path) -> Tuple[int, str]:
    """(size, sha256) of a finished file, flushed to disk."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_HASH_BLOCK), b""):
            digest.update(block)
        os.fsync(stream.fileno())
    return path.stat().st_size, digest.hexdigest()


def _layout(dataset: SourceDataset, rows_per_shard: Optional[int]) -> Tuple[int, int]:
    """(rows per shard, rows per row group)."""
    if dataset.encoding == "raw":
        row_bytes = int(np.prod(dataset.image_shape))
        default_shard = max(1, TARGET_SHARD_BYTES // row_bytes)
        group = max(1, ROW_GROUP_BYTES // row_bytes)
    else:
        default_shard, group = JPEG_ROWS_PER_SHARD, JPEG_ROWS_PER_GROUP
    if rows_per_shard is not None and rows_per_shard < 1:
        raise DataError(f"rows_per_shard must be >= 1, got {rows_per_shard}")
    shard = rows_per_shard or default_shard
    return shard, min(group, shard)


def _write_shard(
    path: Path,
    pieces: Iterator[Tuple[Any, np.ndarray]],
    groups: List[int],
    start: int,
    extra: Optional[Dict[str, np.ndarray]] = None,
) -> dict:
    """Write one shard from the next ``len(groups)`` pieces; its manifest entry."""
    extra = extra or {}
    schema = _schema(list(extra))
    options = dict(
        compression=COMPRESSION, use_dictionary=False, write_statistics=["label", "index", *extra]
    )
    with pq.ParquetWriter(path, schema, **options) as writer:
        if not groups:
            writer.write_table(schema.empty_table())
        for rows in groups:
            images, labels = next(pieces)
            writer.write_table(_table(images, labels, start, extra), row_group_size=rows)
            start += rows
    size, sha256 = _hash_and_sync(path)
    return {"file": path.name, "rows": sum(groups), "bytes": size, "sha256": sha256}


def _write_split(
    dataset: SourceDataset,
    split: SplitSource,
    folder: Path,
    rows_per_shard: int,
    rows_per_group: int,
) -> dict:
    """Write the shards of one split; its manifest entry."""
    shard_rows = [
        min(rows_per_shard, split.count - start) for start in range(0, split.count, rows_per_shard)
    ]
    shard_rows = shard_rows or [0]  # an empty split still gets one (empty) file
    group_rows = [
        [min(rows_per_group, rows - start) for start in range(0, rows, rows_per_group)]
        for rows in shard_rows
    ]
    stats = _ChannelStats(dataset.image_shape[2]) if dataset.encoding == "raw" else None

    def checked() -> Iterator[Tuple[Any, np.ndarray]]:
        start = 0
        for images, labels in split.chunks():
            images, labels = _checked_chunk(dataset, split.name, images, labels, start)
            if stats is not None:
                stats.update(images)
            start += len(labels)
            yield images, labels

    pieces = _regroup(checked(), [rows for groups in group_rows for rows in groups], split)
    shards = []
    for number, groups in enumerate(group_rows):
        name = f"{split.name}-{number:05d}-of-{len(shard_rows):05d}.parquet"
        shards.append(
            _write_shard(folder / name, pieces, groups, number * rows_per_shard, dict(sorted(split.columns.items())))
        )
    for _ in pieces:  # drains the stream: a split yielding too many rows fails here
        pass
    mean, std = stats.mean_std() if stats is not None else (None, None)
    return {"count": split.count, "shards": shards, "mean": mean, "std": std}


def _manifest(dataset: SourceDataset, splits: Dict[str, dict]) -> dict:
    height, width, channels = dataset.image_shape if dataset.encoding == "raw" else (None, None, 3)
    return {
        "format": FORMAT,
        "version": VERSION,
        "dataset": dataset.name,
        "source_format": dataset.source_format,
        "classes": list(dataset.classes),
        "num_classes": len(dataset.classes),
        "image": {
            "encoding": dataset.encoding,
            "height": height,
            "width": width,
            "channels": channels,
        },
        "columns": {field.name: str(field.type) for field in _schema(sorted(dataset.splits[0].columns))},
        "splits": splits,
        "options": dict(dataset.options),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "raysys_version": raysys.__version__,
    }


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(data, stream, indent=2)
        stream.write("\n")
        stream.flush()
        os.fsync(stream.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_out(out: str, *, overwrite: bool = False) -> None:
    """Raise DataError now if :func:`write_shards` would refuse to write to ``out``.

    Lets a caller fail fast, before reading a large source.
    """
    _check_target(_local_dir(out), overwrite)


def _check_target(target: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an empty folder or (with overwrite) old shards."""
    if not target.exists():
        return
    if not target.is_dir():
        raise DataError(f"cannot write shards to {target}: it is a file")
    if (target / MANIFEST_NAME).is_file():
        if not overwrite:
            raise DataError(
                f"{target} already holds prepared shards; pass --overwrite to replace them"
            )
    elif any(target.iterdir()):
        raise DataError(
            f"{target} exists and is not a shards folder (no {MANIFEST_NAME}); refusing to replace it"
        )


def _move_into_place(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``; an existing ``target`` is swapped out, then deleted."""
    if not target.exists():
        os.rename(new, target)
    else:
        old = target.with_name(f"{target.name}.old-{secrets.token_hex(4)}")
        os.rename(target, old)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


def write_shards(
    dataset: SourceDataset,
    out: str,
    *,
    rows_per_shard: Optional[int] = None,
    overwrite: bool = False,
) -> dict:
    """Write ``dataset`` as Parquet shards plus manifest to the local folder ``out``.

    Everything goes to a temporary sibling folder that is renamed into place
    only when complete, so ``out`` is never left half-written. Returns the manifest.
    """
    _check_dataset(dataset)
    target = _local_dir(out)
    _check_target(target, overwrite)
    shard_size, group_size = _layout(dataset, rows_per_shard)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f"{target.name}.tmp-{secrets.token_hex(4)}")
    temporary.mkdir()
    try:
        splits = {
            split.name: _write_split(dataset, split, temporary, shard_size, group_size)
            for split in dataset.splits
        }
        manifest = _manifest(dataset, splits)
        _write_json(temporary / MANIFEST_NAME, manifest)  # last: it marks the folder complete
        _fsync_dir(temporary)
        _check_target(target, overwrite)  # again: another run may have finished meanwhile
        _move_into_place(temporary, target)
        return manifest
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


# ---- reading -----------------------------------------------------------------


def _prepare_hint(path: str, dataset: Optional[str]) -> str:
    return (
        f"run `python -m raysys prepare {dataset or '<dataset>'} --source <dir> --out {path}` first"
    )


def _check_manifest(manifest: Any, where: str, hint: str) -> dict:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{where} is not a {FORMAT} manifest; {hint}")
    if manifest.get("version") != VERSION:
        raise DataError(
            f"{where} has version {manifest.get('version')!r}, this raysys reads version {VERSION}; "
            f"re-run prepare with --overwrite"
        )
    for key in ("dataset", "classes", "num_classes", "image", "splits"):
        if key not in manifest:
            raise DataError(f"{where} lacks the key {key!r}; {hint}")
    image = manifest["image"]
    encoding = image.get("encoding") if isinstance(image, dict) else None
    if encoding not in ENCODINGS:
        raise DataError(f"{where}: image encoding {one_of(encoding, ENCODINGS)}")
    if not isinstance(manifest["splits"], dict):
        raise DataError(f"{where}: 'splits' must map split names to their shards; {hint}")
    for name, split in manifest["splits"].items():
        shards = split.get("shards") if isinstance(split, dict) else None
        if not isinstance(shards, list) or not all(
            isinstance(s, dict) and _SHARD_KEYS <= set(s) for s in shards
        ):
            raise DataError(
                f"{where}: split {name!r} must list shards with keys {sorted(_SHARD_KEYS)}"
            )
        for shard in shards:
            _check_shard_name(shard["file"], where, name)
        rows = sum(shard["rows"] for shard in shards)
        if rows != split.get("count"):
            raise DataError(
                f"{where}: split {name!r} has count {split.get('count')} but its shards hold {rows} rows"
            )
    return manifest


def _check_shard_name(file: Any, where: str, split: str) -> None:
    """A shard's ``file`` must name a file inside the shards folder: relative, without '..'."""
    text = file if isinstance(file, str) else ""
    parts = text.replace("\\", "/").split("/")
    if not text or "\x00" in text or _is_uri(text) or os.path.isabs(text) or text.startswith(("/", "\\")) \
            or any(part in ("", "..") for part in parts):
        raise DataError(
            f"{where}: split {split!r} names the shard file {file!r}, which is not a path inside the shards folder; "
            "a manifest may name only files in its own folder (re-run prepare with --overwrite)"
        )


def _shard_path(path: str, file: str, where: str) -> str:
    """``file`` joined to the shards folder ``path``, refused if it resolves outside it (a symlink too)."""
    joined = _join(path, file)
    if _is_uri(path) and not str(path).startswith("file://"):
        return joined  # object stores have no links; the name was checked in _check_manifest
    folder = str(path)[len("file://"):] if str(path).startswith("file://") else str(path)
    base = Path(os.path.abspath(folder)).resolve()
    target = (base / file).resolve()
    if not target.is_relative_to(base):
        raise DataError(
            f"shard {where} resolves to {target}, outside the shards folder {base}; "
            "a manifest may name only files in its own folder (re-run prepare with --overwrite)"
        )
    return joined


def load_manifest(path: str, *, dataset: Optional[str] = None) -> dict:
    """The validated manifest of the shards folder ``path`` (local path or URI).

    ``dataset`` only improves the hint in error messages.
    """
    hint = _prepare_hint(path, dataset)
    fs, inner = _filesystem(path)
    with _io_errors(path):
        info = fs.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"no shards at {path}: it does not exist; {hint}")
    if info.type != pafs.FileType.Directory:
        parent = _parent(path) if os.path.basename(str(path).rstrip("/")) == MANIFEST_NAME else ""
        raise DataError(
            f"no shards at {path}: it is a file, not a shards folder (the folder `prepare --out` wrote, "
            f"holding {MANIFEST_NAME} and the .parquet shards)" + (f"; did you mean {parent}?" if parent else "")
        )
    manifest_path = f"{inner}/{MANIFEST_NAME}"
    where = _join(path, MANIFEST_NAME)
    with _io_errors(where):
        if fs.get_file_info(manifest_path).type != pafs.FileType.File:
            raise DataError(
                f"no {MANIFEST_NAME} in {path} (never prepared, or interrupted); {hint}"
            )
        with fs.open_input_stream(manifest_path) as stream:
            raw = stream.read()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"invalid manifest {where}: {err}; {hint}") from None
    return _check_manifest(manifest, where, hint)


def _parent(path: str) -> str:
    text = str(path).rstrip("/")
    return text.rsplit("/", 1)[0] if _is_uri(text) else os.path.dirname(os.path.abspath(text))


def _split_entry(manifest: dict, split: str) -> dict:
    if split not in manifest["splits"]:
        raise DataError(
            f"no split {split!r} in dataset {manifest['dataset']}: {one_of(split, manifest['splits'])}"
        )
    return manifest["splits"][split]


def shard_files(path: str, manifest: dict, split: str) -> List[str]:
    """Absolute paths (or URIs) of the shards of ``split``, in order.

    Absolute, because Ray workers need not share the caller's working directory.
    """
    base = str(path) if _is_uri(path) else os.path.abspath(path)
    files = []
    for shard in _split_entry(manifest, split)["shards"]:
        _check_shard_name(shard["file"], _join(path, MANIFEST_NAME), split)
        files.append(_shard_path(base, shard["file"], _join(path, shard["file"])))
    return files


def _sha256(fs: pafs.FileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as stream:
        for block in iter(lambda: stream.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_shard(
    fs: pafs.FileSystem, inner: str, where: str, shard: dict, checksums: bool, read: bool = False
) -> None:
    with _io_errors(where):
        info = fs.get_file_info(inner)
    if info.type != pafs.FileType.File:
        raise DataError(f"missing shard {where}; re-run prepare with --overwrite")
    size_note = (
        ""
        if info.size == shard["bytes"]
        else f" (size {info.size} bytes, manifest says {shard['bytes']})"
    )
    try:
        with fs.open_input_file(inner) as stream:
            rows = pq.ParquetFile(stream).metadata.num_rows
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"corrupt Parquet shard {where}: {_one_line(err)}{size_note}") from None
    if size_note:
        raise DataError(f"shard {where} changed since prepare:{size_note}")
    if rows != shard["rows"]:
        raise DataError(f"shard {where} holds {rows} rows, manifest says {shard['rows']}")
    if checksums:
        with _io_errors(where):
            actual = _sha256(fs, inner)
        if actual != shard["sha256"]:
            raise DataError(
                f"checksum mismatch for shard {where}: sha256 {actual}, manifest says {shard['sha256']}"
            )
    elif read:
        _read_pages(fs, inner, where)


def _read_pages(fs: pafs.FileSystem, inner: str, where: str) -> None:
    """Decode every page of a shard, one row group at a time: a damaged page names its shard and row group."""
    group = -1
    try:
        with fs.open_input_file(inner) as stream:
            parquet = pq.ParquetFile(stream)
            for group in range(parquet.metadata.num_row_groups):
                parquet.read_row_group(group)
    except (OSError, pa.ArrowException) as err:
        at = f" (row group {group})" if group >= 0 else ""
        raise DataError(
            f"corrupt Parquet shard {where}{at}: {_one_line(err)}; re-run prepare with --overwrite"
        ) from None


def verify_shards(
    path: str, manifest: dict, splits: Sequence[str], *, checksums: bool = False
) -> None:
    """Check that the shards of ``splits`` exist, lie inside ``path`` and match the manifest (DataError if not).

    Always: each file is there, inside the folder, with the manifest's size and
    row count and a readable footer. ``checksums``: its sha256 too. Without
    checksums, local shards of at most READ_CHECK_BYTES in all are also read
    page by page, so a damaged page is refused here, naming its shard.
    """
    fs, inner = _filesystem(path)
    entries = [shard for split in splits for shard in _split_entry(manifest, split)["shards"]]
    local = not _is_uri(path) or str(path).startswith("file://")
    read = local and sum(int(shard.get("bytes") or 0) for shard in entries) <= READ_CHECK_BYTES
    for split in splits:
        for shard in _split_entry(manifest, split)["shards"]:
            where = _join(path, shard["file"])
            _check_shard_name(shard["file"], _join(path, MANIFEST_NAME), split)
            _shard_path(path, shard["file"], where)
            _verify_shard(fs, f"{inner}/{shard['file']}", where, shard, checksums, read)


def _values_of(images: pa.Array) -> np.ndarray:
    """The concatenated values of a binary Arrow array, as a writable uint8 array."""
    if not (pa.types.is_binary(images.type) or pa.types.is_large_binary(images.type)):
        raise DataError(f"raw image column has type {images.type}, expected binary")
    if images.null_count:
        raise DataError(f"raw image column has {images.null_count} missing images")
    if len(images) == 0:
        return np.empty(0, np.uint8)
    offset_type = np.int32 if pa.types.is_binary(images.type) else np.int64
    _, offsets_buffer, values_buffer = images.buffers()
    if values_buffer is None:  # every value is empty
        return np.empty(0, np.uint8)
    offsets = np.frombuffer(offsets_buffer, offset_type)[
        images.offset : images.offset + len(images) + 1
    ]
    # A zero-copy view of the values, then one copy to make it writable.
    return np.frombuffer(values_buffer, np.uint8)[offsets[0] : offsets[-1]].copy()


def decode_raw(
    images: Union[Sequence[bytes], pa.Array, pa.ChunkedArray], shape: Tuple[int, int, int]
) -> np.ndarray:
    """An ``image`` column of raw shards as a writable uint8 (n, H, W, C) array."""
    shape = tuple(int(side) for side in shape)
    if isinstance(images, pa.ChunkedArray):
        images = images.combine_chunks()
    if isinstance(images, pa.Array):
        buffer = _values_of(images)
    else:
        buffer = np.frombuffer(bytearray(b"").join(images), dtype=np.uint8)
    row_bytes = int(np.prod(shape))
    if buffer.size != len(images) * row_bytes:
        raise DataError(
            f"raw image bytes do not fit shape {shape}: {buffer.size} bytes for {len(images)} images "
            f"of {row_bytes} bytes"
        )
    return buffer.reshape((len(images),) + shape)
