"""The Parquet shard writer (atomic, validated) and the read-time checks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysys.data.formats.base import SourceDataset, SplitSource
from raysys.data.shards import (
    MANIFEST_NAME,
    decode_raw,
    load_manifest,
    shard_files,
    verify_shards,
    write_shards,
)
from raysys.errors import DataError

SHAPE = (4, 5, 3)
CLASSES = ["a", "b", "c"]


def make_split(
    name: str,
    count: int,
    *,
    seed: int = 0,
    chunk: int = 4,
    fail_after: Optional[int] = None,
    error: type = RuntimeError,
    declared: Optional[int] = None,
    labels: Optional[np.ndarray] = None,
) -> SplitSource:
    """A split of random raw images; ``fail_after`` chunks, it raises ``error``."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count,) + SHAPE, dtype=np.uint8)
    labels = rng.integers(0, len(CLASSES), count) if labels is None else labels

    def chunks() -> Iterator:
        for number, start in enumerate(range(0, count, chunk)):
            if fail_after is not None and number == fail_after:
                raise error("reader failed midway")
            yield images[start : start + chunk], labels[start : start + chunk]

    split = SplitSource(name, count if declared is None else declared, chunks)
    split.images, split.labels = images, labels  # what the test expects back
    return split


def make_dataset(*splits: SplitSource, encoding: str = "raw") -> SourceDataset:
    return SourceDataset(
        name="toy",
        source_format="test",
        classes=list(CLASSES),
        encoding=encoding,
        image_shape=SHAPE if encoding == "raw" else None,
        splits=list(splits),
    )


def read_back(out: Path, split: str, shape=SHAPE) -> Dict[str, np.ndarray]:
    manifest = load_manifest(str(out))
    table = pa.concat_tables(pq.read_table(path) for path in shard_files(str(out), manifest, split))
    return {
        "images": decode_raw(table.column("image"), shape),
        "labels": table.column("label").to_numpy(),
        "index": table.column("index").to_numpy(),
    }


def leftovers(parent: Path) -> List[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


@pytest.fixture
def written(tmp_path: Path):
    """A good shards folder: train of 10 rows in shards of 4, test of 3."""
    out = tmp_path / "shards"
    train, test = make_split("train", 10), make_split("test", 3, seed=1)
    manifest = write_shards(make_dataset(train, test), str(out), rows_per_shard=4)
    return out, manifest, train, test


# ---- writing -----------------------------------------------------------------


def test_round_trip_and_manifest(written):
    out, manifest, train, test = written
    assert sorted(os.listdir(out)) == [
        MANIFEST_NAME,
        "test-00000-of-00001.parquet",
        "train-00000-of-00003.parquet",
        "train-00001-of-00003.parquet",
        "train-00002-of-00003.parquet",
    ]
    for split in (train, test):
        back = read_back(out, split.name)
        np.testing.assert_array_equal(back["images"], split.images)
        np.testing.assert_array_equal(back["labels"], split.labels)
        np.testing.assert_array_equal(back["index"], np.arange(split.count))
    assert manifest == json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["format"] == "raysys-shards" and manifest["version"] == 1
    assert (
        manifest["dataset"] == "toy"
        and manifest["classes"] == CLASSES
        and manifest["num_classes"] == 3
    )
    assert manifest["image"] == {"encoding": "raw", "height": 4, "width": 5, "channels": 3}
    assert [s["rows"] for s in manifest["splits"]["train"]["shards"]] == [4, 4, 2]
    assert manifest["splits"]["train"]["count"] == 10
    pixels = train.images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(manifest["splits"]["train"]["mean"], pixels.mean(0), atol=1e-6)
    np.testing.assert_allclose(manifest["splits"]["train"]["std"], pixels.std(0), atol=1e-6)
    assert manifest["raysys_version"] and manifest["created"]


def test_parquet_layout(written):
    out, manifest, _, _ = written
    parquet = pq.ParquetFile(out / "train-00000-of-00003.parquet")
    assert parquet.schema_arrow.names == ["image", "label", "index"]
    assert str(parquet.schema_arrow.field("image").type) == "binary"
    column = parquet.metadata.row_group(0).column(0)
    assert "PLAIN_DICTIONARY" not in column.encodings and "RLE_DICTIONARY" not in column.encodings


def test_jpeg_encoding_keeps_bytes(tmp_path):
    blobs = [bytes([i]) * (i + 1) for i in range(5)]
    labels = np.array([0, 1, 2, 0, 1])
    split = SplitSource(
        "train", 5, lambda: iter([(blobs[:3], labels[:3]), (blobs[3:], labels[3:])])
    )
    manifest = write_shards(
        make_dataset(split, encoding="jpeg"), str(tmp_path / "out"), rows_per_shard=2
    )
    assert manifest["image"] == {"encoding": "jpeg", "height": None, "width": None, "channels": 3}
    assert manifest["splits"]["train"]["mean"] is None
    files = shard_files(str(tmp_path / "out"), manifest, "train")
    table = pa.concat_tables(pq.read_table(path) for path in files)
    assert table.column("image").to_pylist() == blobs
    assert len(files) == 3


def test_unlabeled_split_allows_minus_one(tmp_path):
    split = make_split("unlabeled", 6, labels=np.full(6, -1))
    manifest = write_shards(make_dataset(split), str(tmp_path / "out"))
    assert manifest["splits"]["unlabeled"]["count"] == 6
    assert len(manifest["splits"]["unlabeled"]["shards"]) == 1


def test_empty_split_still_has_one_file(tmp_path):
    manifest = write_shards(make_dataset(make_split("train", 0)), str(tmp_path / "out"))
    assert [s["rows"] for s in manifest["splits"]["train"]["shards"]] == [0]
    verify_shards(str(tmp_path / "out"), manifest, ["train"], checksums=True)


@pytest.mark.parametrize(
    "split, message",
    [
        (make_split("train", 10, declared=12), "yields 10 rows, expected 12"),
        (make_split("train", 10, declared=7), "more than its declared 7 rows"),
        (make_split("train", 4, labels=np.array([0, 1, 3, 0])), "labels range 0..3, expected 0..2"),
        (
            make_split("train", 4, labels=np.array([0, -1, 1, 0])),
            "labels range -1..1, expected 0..2",
        ),
        (make_split("train", 4, labels=np.array([0.5, 1, 1, 0])), "expected int64"),
    ],
)
def test_bad_rows_are_refused_and_leave_nothing(tmp_path, split, message):
    with pytest.raises(DataError, match=message):
        write_shards(make_dataset(split), str(tmp_path / "out"), rows_per_shard=3)
    assert os.listdir(tmp_path) == []


def test_wrong_image_shape_is_refused(tmp_path):
    images = np.zeros((2, 4, 4, 3), np.uint8)
    split = SplitSource("train", 2, lambda: iter([(images, np.array([0, 1]))]))
    with pytest.raises(
        DataError, match=r"images are uint8 \(2, 4, 4, 3\), expected uint8 \(n, 4, 5, 3\)"
    ):
        write_shards(make_dataset(split), str(tmp_path / "out"))


def test_existing_output_needs_overwrite(written):
    out, manifest, _, _ = written
    with pytest.raises(DataError, match="already holds prepared shards; pass --overwrite"):
        write_shards(make_dataset(make_split("train", 2)), str(out))
    assert load_manifest(str(out)) == manifest
    new = write_shards(make_dataset(make_split("train", 2, seed=5)), str(out), overwrite=True)
    assert list(new["splits"]) == ["train"]
    assert sorted(os.listdir(out)) == [MANIFEST_NAME, "train-00000-of-00001.parquet"]
    assert leftovers(out.parent) == []


def test_folder_that_is_not_shards_is_never_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="is not a shards folder"):
        write_shards(make_dataset(make_split("train", 2)), str(out), overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_empty_existing_folder_is_used(tmp_path):
    (tmp_path / "out").mkdir()
    write_shards(make_dataset(make_split("train", 2)), str(tmp_path / "out"))
    assert load_manifest(str(tmp_path / "out"))["splits"]["train"]["count"] == 2


def test_writing_to_a_uri_is_refused(tmp_path):
    with pytest.raises(DataError, match="only local paths"):
        write_shards(make_dataset(make_split("train", 2)), "s3://bucket/shards")


# ---- atomicity ---------------------------------------------------------------


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_nothing(tmp_path, error):
    failing = make_split("train", 20, fail_after=2, error=error)
    with pytest.raises(error):
        write_shards(make_dataset(failing), str(tmp_path / "out"), rows_per_shard=3)
    assert os.listdir(tmp_path) == []


def test_failed_overwrite_keeps_the_old_shards(written):
    out, manifest, train, _ = written
    failing = make_split("train", 20, fail_after=3)
    with pytest.raises(RuntimeError):
        write_shards(make_dataset(failing), str(out), overwrite=True, rows_per_shard=3)
    assert load_manifest(str(out)) == manifest
    verify_shards(str(out), manifest, ["train", "test"], checksums=True)
    np.testing.assert_array_equal(read_back(out, "train")["images"], train.images)
    assert leftovers(out.parent) == []


def test_leftover_temp_folder_is_not_shards(tmp_path):
    (tmp_path / "out.tmp-1234").mkdir()
    with pytest.raises(DataError, match="does not exist"):
        load_manifest(str(tmp_path / "out"))


# ---- load_manifest -----------------------------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(DataError) as err:
        load_manifest(str(tmp_path / "nope"), dataset="cifar10")
    message = str(err.value)
    assert str(tmp_path / "nope") in message and "does not exist" in message
    assert "python -m raysys prepare cifar10 --source" in message
    assert "\n" not in message


def test_missing_manifest(tmp_path):
    with pytest.raises(
        DataError, match=f"no {MANIFEST_NAME} in .*python -m raysys prepare <dataset>"
    ):
        load_manifest(str(tmp_path))


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid manifest"),
        ('{"format": "other"}', "is not a raysys-shards manifest"),
        (
            '{"format": "raysys-shards", "version": 99}',
            "has version 99, this raysys reads version 1",
        ),
        ('{"format": "raysys-shards", "version": 1}', "lacks the key 'dataset'"),
        (
            '{"format": "raysys-shards", "version": 1, "dataset": "x", "classes": [], "num_classes": 0,'
            ' "image": "raw", "splits": {}}',
            "image encoding None is not one of",
        ),
        (
            '{"format": "raysys-shards", "version": 1, "dataset": "x", "classes": [], "num_classes": 0,'
            ' "image": {"encoding": "raw"}, "splits": {"train": {"count": 1, "shards": [{"file": "f"}]}}}',
            "split 'train' must list shards with keys",
        ),
    ],
)
def test_bad_manifest(tmp_path, content, message):
    (tmp_path / MANIFEST_NAME).write_text(content)
    with pytest.raises(DataError, match=message):
        load_manifest(str(tmp_path))


def test_manifest_whose_rows_do_not_add_up(written):
    out, manifest, _, _ = written
    manifest["splits"]["train"]["count"] = 11
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="count 11 but its shards hold 10 rows"):
        load_manifest(str(out))


def test_relative_path_and_file_uri(written, monkeypatch):
    out, manifest, _, _ = written
    monkeypatch.chdir(out.parent)
    assert load_manifest("shards") == manifest
    assert shard_files("shards", manifest, "test") == [str(out / "test-00000-of-00001.parquet")]
    verify_shards("shards", manifest, ["train"], checksums=True)
    uri = out.as_uri()
    assert load_manifest(uri) == manifest
    assert shard_files(uri, manifest, "test") == [f"{uri}/test-00000-of-00001.parquet"]
    verify_shards(uri, manifest, ["train", "test"], checksums=True)


# ---- verify_shards -----------------------------------------------------------


def test_verify_good_shards(written):
    out, manifest, _, _ = written
    verify_shards(str(out), manifest, ["train", "test"], checksums=True)


def test_unknown_split(written):
    out, manifest, _, _ = written
    with pytest.raises(DataError, match=r"no split 'tset'.*did you mean: test"):
        verify_shards(str(out), manifest, ["tset"])
    with pytest.raises(DataError, match="no split 'val'"):
        shard_files(str(out), manifest, "val")


@pytest.mark.parametrize("same_size", [True, False])
def test_corrupt_shard(written, same_size):
    out, manifest, _, _ = written
    shard = out / "train-00001-of-00003.parquet"
    size = shard.stat().st_size
    shard.write_bytes(b"\x17" * (size if same_size else 100))
    with pytest.raises(DataError, match=f"corrupt Parquet shard {shard}: ") as err:
        verify_shards(str(out), manifest, ["train"])
    assert ("manifest says" in str(err.value)) is not same_size


def test_truncated_shard(written):
    out, manifest, _, _ = written
    shard = out / "test-00000-of-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataError, match="corrupt Parquet shard"):
        verify_shards(str(out), manifest, ["test"])


def test_missing_shard(written):
    out, manifest, _, _ = written
    (out / "train-00002-of-00003.parquet").unlink()
    with pytest.raises(DataError, match="missing shard .*train-00002-of-00003.parquet"):
        verify_shards(str(out), manifest, ["train"])


def test_manifest_and_shard_row_counts_differ(written):
    out, manifest, _, _ = written
    manifest["splits"]["train"]["shards"][0]["rows"] = 5
    with pytest.raises(
        DataError, match="train-00000-of-00003.parquet holds 4 rows, manifest says 5"
    ):
        verify_shards(str(out), manifest, ["train"])


def test_shard_of_other_size(written):
    out, manifest, _, _ = written
    manifest["splits"]["test"]["shards"][0]["bytes"] += 1
    with pytest.raises(DataError, match="changed since prepare: .*manifest says"):
        verify_shards(str(out), manifest, ["test"])


def test_checksum_mismatch(written):
    out, manifest, _, _ = written
    shard = out / "test-00000-of-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the pixel pages: the footer stays valid
    shard.write_bytes(bytes(data))
    verify_shards(str(out), manifest, ["test"])
    with pytest.raises(DataError, match=f"checksum mismatch for shard {shard}: sha256 "):
        verify_shards(str(out), manifest, ["test"], checksums=True)


# ---- decode_raw --------------------------------------------------------------


def test_decode_raw_inputs():
    images = np.random.default_rng(3).integers(0, 256, (6,) + SHAPE, dtype=np.uint8)
    rows = [image.tobytes() for image in images]
    array = pa.array(rows, type=pa.binary())
    for column in (
        rows,
        np.array(rows, dtype=object),
        array,
        array.slice(0),
        pa.chunked_array([rows[:2], rows[2:]]),
    ):
        decoded = decode_raw(column, SHAPE)
        np.testing.assert_array_equal(decoded, images)
        assert decoded.flags.writeable
    np.testing.assert_array_equal(decode_raw(array.slice(2, 3), SHAPE), images[2:5])
    np.testing.assert_array_equal(decode_raw(pa.array(rows, type=pa.large_binary()), SHAPE), images)
    assert decode_raw([], SHAPE).shape == (0,) + SHAPE


def test_decode_raw_wrong_size():
    with pytest.raises(DataError, match=r"do not fit shape \(4, 5, 3\)"):
        decode_raw([b"\x00" * 59], SHAPE)
