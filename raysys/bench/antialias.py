"""``bench antialias``: what antialiasing costs, side by side in one process.

* Forward time of every ``<arch>_lpf4`` against torchvision's ``<arch>`` (eval mode,
  no_grad, CPU, a batch of ``batch`` images of ``size`` x ``size``); the two run
  interleaved, round by round, and the ratio is lpf4 time / baseline time.
* The ImageNet input pipeline: Parquet JPEG shards -> Ray Data decode +
  RandomResizedCrop(224) + flip, against torchvision ImageFolder + DataLoader on
  the same JPEGs (the ``bench data`` JPEG cases, reused), in images/s per CPU worker.
"""
from __future__ import annotations

import torch

from raysys.bench.registry import BENCHMARKS, BenchContext, register_benchmark
from raysys.bench.timing import compare, torch_threads

QUICK_ARCHS = ("resnet18", "mobilenet_v2")


def _forward_case(model: torch.nn.Module, images: torch.Tensor):
    def run() -> float:
        with torch.no_grad():
            model(images)
        return float(images.shape[0])

    return run


def _archs(value) -> list:
    from raysys.families.antialiased.models import ARCHITECTURES

    if value in ("all", "", None):
        return list(ARCHITECTURES)
    names = [a.strip() for a in str(value).split(",") if a.strip()]
    unknown = [a for a in names if a not in ARCHITECTURES]
    if unknown:
        raise ValueError(f"unknown architectures {unknown}; known: {', '.join(ARCHITECTURES)}")
    return names


def _bench_forward(ctx: BenchContext) -> None:
    from raysys.families.antialiased.models import build_antialiased, build_baseline

    result = ctx.result
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(ctx["batch"], 3, ctx["size"], ctx["size"], generator=generator)
    for arch in _archs(ctx["archs"]):
        models = {"baseline": build_baseline(arch).eval(), "lpf4": build_antialiased(arch, 4).eval()}
        cases = {f"{arch}.{kind}": _forward_case(model, images) for kind, model in models.items()}
        samples = compare(cases, repeats=ctx["repeats"], warmup=ctx["warmup"])
        for name, sample in samples.items():
            result.add_figure(f"{name}.ms", "ms/batch", [s * 1e3 for s in sample.seconds])
        result.add_ratio(f"{arch} lpf4/baseline forward time", f"{arch}.lpf4.ms", f"{arch}.baseline.ms")
        del models, cases


def data_params(ctx: BenchContext) -> dict:
    """``bench data``'s parameters at its defaults (file sizes, ...), with this benchmark's sizes on top."""
    return {**BENCHMARKS.get("data").full, "jpeg_images": ctx["jpeg_images"], "batch": ctx["data_batch"],
            "workers": ctx["workers"], "in_process_baseline": False}


def _bench_data(ctx: BenchContext) -> None:
    from raysys.bench.data import _jpeg_cases
    from raysys.bench.ray_local import local_ray
    from raysys.bench.result import Goal

    data_ctx = BenchContext(data_params(ctx), ctx.workdir, ctx.result, ctx.quick)
    result = ctx.result
    with local_ray(min_cpus=ctx["workers"]):
        samples = compare(_jpeg_cases(data_ctx), repeats=ctx["repeats"], warmup=ctx["warmup"])
    for name, sample in samples.items():
        result.add_figure(f"{name}.per_worker", "images/s per CPU worker", [r / ctx["workers"] for r in sample.rate().values])
    result.add_ratio("jpeg ray_data/torchvision", "jpeg.ray_data.per_worker", "jpeg.torchvision.per_worker", Goal(">=", 1.0))
    result.notes.append(
        f"data: {ctx['jpeg_images']} JPEGs, batches of {ctx['data_batch']}, {ctx['workers']} CPU workers on each side "
        "(Ray Data collate threads / DataLoader processes), RandomResizedCrop(224) + flip + normalise"
    )


@register_benchmark(
    "antialias",
    help="forward time of each <arch>_lpf4 vs its torchvision baseline (CPU), and JPEG decode+augment images/s (Ray Data vs DataLoader)",
    full=dict(
        archs="all", batch=16, size=224, torch_threads=2, repeats=3, warmup=1,
        data=True, jpeg_images=512, data_batch=64, workers=2,
    ),
    quick=dict(archs=",".join(QUICK_ARCHS), batch=2, size=64, repeats=1, warmup=0, jpeg_images=16, data_batch=8),
)
def bench_antialias(ctx: BenchContext) -> None:
    with torch_threads(ctx["torch_threads"]):
        ctx.result.machine["torch_threads"] = torch.get_num_threads()
        _bench_forward(ctx)
    if ctx["data"]:
        _bench_data(ctx)
    ctx.result.notes.append(
        f"forward: eval mode, no_grad, CPU, batch {ctx['batch']} x 3 x {ctx['size']} x {ctx['size']}, "
        "baseline and lpf4 interleaved per round; the original's GPU timing (batch 48, RTX 2080 Ti) is not measured"
    )
