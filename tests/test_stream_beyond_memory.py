"""``data.materialize_limit_gb``: below it a split is read once into the object store; above it (or at 0) every epoch reads the shards."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysys.config import load_config
from raysys.data import stream
from raysys.errors import ConfigError

PRESET = "cifar-resnet/cifar10-resnet20"
RAW = stream.ImageFormat("raw", 32, 32, 3, (0.5,) * 3, (0.25,) * 3)


def test_the_key_sets_the_limit_and_zero_switches_materialisation_off():
    default = load_config(PRESET)
    assert stream.materialize_limit_bytes(default.data) == stream.CACHE_LIMIT_BYTES == 2 << 30
    assert stream.should_materialize(50_000, RAW, stream.materialize_limit_bytes(default.data))  # CIFAR-10: 154 MB
    off = load_config(PRESET, ["data.materialize_limit_gb=0"])
    assert stream.materialize_limit_bytes(off.data) == 0
    assert not stream.should_materialize(1, RAW, 0)
    small = load_config(PRESET, ["data.materialize_limit_gb=0.1"])  # 107 MB: CIFAR-10 train no longer fits
    assert not stream.should_materialize(50_000, RAW, stream.materialize_limit_bytes(small.data))
    assert stream.should_materialize(10_000, RAW, stream.materialize_limit_bytes(small.data))


def test_a_negative_limit_is_refused_naming_the_key():
    from raysys.train.preflight import check_values

    with pytest.raises(ConfigError, match="'data.materialize_limit_gb': -1.*0 = never materialise"):
        check_values(load_config(PRESET, ["data.materialize_limit_gb=-1"]))


class _Lazy:
    """A stand-in for a lazy Ray Dataset: records what build_datasets asks of it."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append(name)
            return self
        return call


@pytest.mark.parametrize("limit, materialized", [(stream.CACHE_LIMIT_BYTES, True), (0, False)])
def test_build_datasets_materialises_only_under_the_limit(monkeypatch, limit, materialized):
    import ray.data

    lazy = _Lazy()
    monkeypatch.setattr(ray.data, "read_parquet", lambda files, columns: lazy)
    monkeypatch.setattr(stream, "shard_files", lambda path, manifest, split: ["a.parquet"])
    manifest = {"splits": {"train": {"count": 100}}}
    stream.build_datasets("shards", manifest, {"train": ("train", 0)}, RAW, 0, materialize_limit=limit)
    assert ("materialize" in lazy.calls) is materialized


# -- slow: real shards, several epochs ------------------------------------------------------------
def _shard_of(index, rows_per_shard: int):
    return {int(i) // rows_per_shard for i in index}


def _relabel(shards_dir, rows_per_shard: int) -> int:
    """Rewrite every train shard with labels + 1 (mod 10): what a later read sees if it reads the files again."""
    files = sorted(shards_dir.glob("train-*.parquet"))
    for path in files:
        table = pq.read_table(path)
        labels = pa.array([(int(v) + 1) % 10 for v in table.column("label").to_pylist()], table.schema.field("label").type)
        pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", labels), path)
    return len(files)


@pytest.mark.slow
def test_streaming_rereads_the_shards_every_epoch_mixes_them_and_stays_bounded(ray_cluster, tmp_path):
    from pipelines.prepare import prepare

    from raysys.bench.fixtures import write_cifar10
    from raysys.bench.stream_epochs import StreamEpochs
    from raysys.bench.stream_memory import MemorySampler
    from raysys.data.formats import get_dataset

    rows_per_shard, per_batch = 100, 240
    write_cifar10(tmp_path / "cifar10", train_per_batch=per_batch, test=16)  # 1200 train rows: 12 shards
    shards = tmp_path / "shards"
    prepare("cifar10", str(tmp_path / "cifar10"), str(shards), rows_per_shard=rows_per_shard)
    spec = get_dataset("cifar10")

    def make(limit):
        return StreamEpochs(shards, spec.mean, spec.std, augment="none", batch_size=64, threads=1, materialize_limit=limit)

    streamed, cached = make(0), make(None)
    assert not streamed.materialized and cached.materialized

    def epoch(epochs: StreamEpochs):
        with MemorySampler(interval=0.1) as sampler:
            batches = list(epochs.batches())
        labels = {int(i): int(l) for b in batches for i, l in zip(b["index"], b["label"])}
        return batches, labels, dict(sampler.peaks)

    first, labels_before, peaks = epoch(streamed)
    _, cached_before, _ = epoch(cached)
    assert len(labels_before) == 5 * per_batch
    assert any(len(_shard_of(b["index"].tolist(), rows_per_shard)) > 1 for b in first)  # a batch mixes shards
    assert _relabel(shards, rows_per_shard) == 5 * per_batch // rows_per_shard

    relabelled = {i: (l + 1) % 10 for i, l in labels_before.items()}
    history = [peaks]
    for _ in range(3):
        _, labels_after, peaks = epoch(streamed)
        history.append(peaks)
        assert labels_after == relabelled  # this epoch read the files again
    _, cached_after, _ = epoch(cached)
    assert cached_after == cached_before  # materialised: the first read is what every epoch sees

    mib = 1 << 20
    # Bounded: later epochs hold no more than the first (plus slack for the allocator), however many epochs run.
    for key in ("driver_rss", "workers_rss"):
        assert max(p[key] for p in history[1:]) <= history[0][key] * 1.25 + 64 * mib, (key, history)
    if history[0].get("object_store"):
        assert max(p["object_store"] for p in history[1:]) <= max(history[0]["object_store"], 1) * 1.5 + 16 * mib, history
