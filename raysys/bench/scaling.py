"""``bench scaling``: training throughput with 1, 2, ... Ray Train workers on this machine.

CIFAR-10 ResNet-20 through ``raysys train`` at the same global batch; each
worker gets ``usable cores // workers`` torch threads (and as many Ray CPUs),
so every run uses the whole machine. Throughput is the loop's own
``images_per_sec`` (all workers' images over the epoch's wall time) of the
last epoch of each run.
"""
from __future__ import annotations

import os

from raysys.bench.fixtures import write_cifar10
from raysys.bench.ray_local import local_ray
from raysys.bench.registry import BenchContext, register_benchmark
from raysys.bench.timing import compare
from raysys.bench.training import RaysysTraining


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@register_benchmark(
    "scaling",
    help="images/s of raysys train with 1 and 2 Ray Train workers (torch threads = cores / workers)",
    full=dict(images=5000, test_images=1000, epochs=2, batch=128, workers=[1, 2], repeats=2, warmup=0),
    quick=dict(images=160, test_images=40, epochs=1, batch=32, repeats=1),
)
def bench_scaling(ctx: BenchContext) -> None:
    from pipelines.prepare import prepare

    result = ctx.result
    source, shards = ctx.workdir / "cifar10", ctx.workdir / "cifar10-shards"
    write_cifar10(source, train_per_batch=ctx["images"] // 5, test=ctx["test_images"])
    prepare("cifar10", str(source), str(shards))
    cores = usable_cores()
    threads = {k: max(1, cores // k) for k in ctx["workers"]}
    with local_ray(min_cpus=max(k * t for k, t in threads.items()) + 1) as startup:
        result.add_figure("ray_startup", "s", [startup], "not part of any ratio")
        runs = {
            k: RaysysTraining(shards, ctx.workdir, ctx["images"], epochs=ctx["epochs"], batch=ctx["batch"], workers=k, threads=t)
            for k, t in threads.items()
        }
        samples = compare({f"workers={k}": run for k, run in runs.items()}, repeats=ctx["repeats"], warmup=ctx["warmup"])
        for k, run in runs.items():
            last_epochs = [values[-1] for values in run.epoch_metric("images_per_sec").values()]
            result.add_figure(f"workers={k}.images_per_s", "images/s", last_epochs, f"{threads[k]} torch threads per worker")
            result.add_figure(f"workers={k}.wall", "s", samples[f"workers={k}"].seconds, "whole run, from a running Ray")
    base = min(threads)
    for k in threads:
        if k != base:
            result.add_ratio(f"workers={k}/workers={base}", f"workers={k}.images_per_s", f"workers={base}.images_per_s")
    result.notes.append(
        f"{cores} usable cores; global batch {ctx['batch']} split across workers; DDP over gloo on CPU; "
        "throughput = last epoch's images_per_sec"
    )
