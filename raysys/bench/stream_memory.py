"""``bench stream-epochs``: epochs of the stream materialised vs read from the shards every epoch, with memory.

CIFAR-10 pickle batches -> ``prepare`` -> many small Parquet shards; then the
production stream (:class:`~raysys.bench.stream_epochs.StreamEpochs`) twice:
``materialized`` (read once into Ray's object store, the default below
``data.materialize_limit_gb``) and ``streamed`` (the limit at 0: every epoch reads
the shards again, as a dataset larger than the limit does). Epochs of the two
alternate. Per epoch: images/s, and the peaks of the driver's RSS, of Ray's worker
processes' RSS and of the object store's bytes in use (:class:`MemorySampler`).
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable, Dict, List

from raysys.bench.registry import BenchContext, register_benchmark

MIB = 1 << 20


def _rss(pid: int) -> int:
    """Resident bytes of process ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as stream:
            return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def ray_worker_pids() -> List[int]:
    """The Ray worker processes of the Ray this process started (descendants whose command lines start with ``ray::``).

    Only descendants: other Rays on the same machine are not counted (a joined
    cluster's workers are not descendants, and the figure is then left out).
    """
    from raysys.bench.timing import _children

    pids = []
    for pid in _children(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as stream:
                if stream.read(5) == b"ray::":
                    pids.append(pid)
        except OSError:
            continue
    return pids


def object_store_bytes() -> int:
    """Bytes in use in Ray's object store (cluster-wide), 0 when Ray cannot say."""
    try:
        import ray
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        reply = get_memory_info_reply(get_state_from_address(ray.get_runtime_context().gcs_address))
        return int(reply.store_stats.object_store_bytes_used)
    except Exception:  # a private API: without it the figure is left out
        return 0


class MemorySampler:
    """Peaks of driver RSS, Ray workers' total RSS and object-store use while the block runs (sampled every ``interval`` s)."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peaks: Dict[str, int] = {}
        self._stop = threading.Event()

    def sample(self) -> None:
        now = {"driver_rss": _rss(os.getpid()), "workers_rss": sum(_rss(pid) for pid in ray_worker_pids()),
               "object_store": object_store_bytes()}
        for key, value in now.items():
            self.peaks[key] = max(self.peaks.get(key, 0), value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "MemorySampler":
        self.peaks, self._stop = {}, threading.Event()
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._stop.set()
        self._thread.join()
        self.sample()
        return False


class Sampled:
    """A case that records its memory peaks per call."""

    def __init__(self, case: Callable[[], float]):
        self.case, self.peaks = case, []

    def __call__(self) -> float:
        with MemorySampler() as sampler:
            work = self.case()
        self.peaks.append(dict(sampler.peaks))
        return work


@register_benchmark(
    "stream-epochs",
    help="images/s and memory peaks per epoch: the stream materialised vs read from the Parquet shards every epoch",
    full=dict(images=20000, rows_per_shard=1000, epochs=4, batch=128, workers=2, torch_threads=1),
    quick=dict(images=640, rows_per_shard=64, epochs=2, batch=32),
)
def bench_stream_epochs(ctx: BenchContext) -> None:
    import math

    import torch

    from pipelines.prepare import prepare
    from raysys.bench.fixtures import write_cifar10
    from raysys.bench.ray_local import local_ray
    from raysys.bench.stream_epochs import StreamEpochs
    from raysys.bench.timing import compare, torch_threads
    from raysys.data.formats import get_dataset

    result = ctx.result
    source, shards = ctx.workdir / "cifar10", ctx.workdir / "cifar10-shards"
    write_cifar10(source, train_per_batch=math.ceil(ctx["images"] / 5), test=ctx["batch"])
    prepare("cifar10", str(source), str(shards), overwrite=True, rows_per_shard=ctx["rows_per_shard"])
    spec = get_dataset("cifar10")
    with torch_threads(ctx["torch_threads"]), local_ray(min_cpus=ctx["workers"]):
        result.machine["torch_threads"] = torch.get_num_threads()
        cases = {
            name: Sampled(StreamEpochs(shards, spec.mean, spec.std, augment="resnet", batch_size=ctx["batch"],
                                       threads=ctx["workers"], materialize_limit=limit))
            for name, limit in (("materialized", None), ("streamed", 0))
        }
        begin = time.perf_counter()
        samples = compare(cases, repeats=ctx["epochs"], warmup=0)
        result.add_figure("wall", "s", [time.perf_counter() - begin], "both cases, every epoch")
    for name, sample in samples.items():
        result.add_figure(name, "images/s", sample.rate().values, "one epoch per value")
        for key in ("driver_rss", "workers_rss", "object_store"):
            values = [peaks.get(key, 0) / MIB for peaks in cases[name].peaks]
            if any(values):
                result.add_figure(f"{name}.{key}_peak", "MiB", values, "peak during each epoch")
    result.add_ratio("streamed/materialized", "streamed", "materialized")
    shards_count = len(list(shards.glob("train-*.parquet"))) or "?"
    result.notes.append(
        f"{ctx['images']} CIFAR-10-format images in {shards_count} train shards of {ctx['rows_per_shard']} rows; "
        f"batches of {ctx['batch']}, augmentation resnet, {ctx['workers']} collate threads; streamed = "
        "data.materialize_limit_gb=0 (every epoch reads the shards again)"
    )
