"""``bench data``: images/s of the raysys input pipeline against torchvision's DataLoader.

Both sides read the same files and do the same work per image:

* CIFAR-10 pickle batches: torchvision ``CIFAR10`` + RandomCrop(32, pad 4), flip,
  ToTensor, Normalize in a DataLoader; against ``prepare cifar10`` -> Parquet shards ->
  the production stream (augmentation ``resnet``).
* A JPEG ImageFolder: torchvision ``ImageFolder`` + RandomResizedCrop(224), flip,
  ToTensor, Normalize; against ``prepare imagenet`` -> JPEG shards -> the stream
  (augmentation ``imagenet``).

Batches of ``batch`` normalised float images; ``workers`` CPU workers on each side:
DataLoader worker processes, and Ray Data collate threads on a Ray of that many CPUs.
For reference, the DataLoader also runs in process (``num_workers=0``).
"""
from __future__ import annotations

import math

import torch

from raysys.bench.fixtures import write_cifar10, write_imagefolder
from raysys.bench.ray_local import local_ray
from raysys.bench.registry import BenchContext, register_benchmark
from raysys.bench.result import Goal
from raysys.bench.stream_epochs import LoaderEpochs, StreamEpochs
from raysys.bench.timing import compare, now, torch_threads

GOAL = Goal(">=", 2.0)
CPU_NOTE = "this process and its children: Ray's own processes are not counted"


def _prepare(dataset: str, source, out) -> None:
    from pipelines.prepare import prepare

    prepare(dataset, str(source), str(out))


def _cifar_cases(ctx: BenchContext) -> dict:
    from raysys.bench import reference
    from raysys.data.formats import get_dataset

    source, shards = ctx.workdir / "cifar10", ctx.workdir / "cifar10-shards"
    write_cifar10(source, train_per_batch=math.ceil(ctx["images"] / 5), test=ctx["batch"])
    _prepare("cifar10", source, shards)
    spec = get_dataset("cifar10")
    dataset = reference.cifar10(source, True, reference.cifar_transform(spec.mean, spec.std))
    return _cases(ctx, "cifar", dataset, StreamEpochs(
        shards, spec.mean, spec.std, augment="resnet", batch_size=ctx["batch"], threads=ctx["workers"],
    ))


def _jpeg_cases(ctx: BenchContext) -> dict:
    from raysys.bench import reference
    from raysys.data.formats.base import IMAGENET_MEAN, IMAGENET_STD

    source, shards = ctx.workdir / "imagefolder", ctx.workdir / "imagenet-shards"
    write_imagefolder(source, classes=10, train_per_class=max(1, ctx["jpeg_images"] // 10), val_per_class=1)
    _prepare("imagenet", source, shards)
    dataset = reference.image_folder(source / "train", reference.imagenet_transform(train=True))
    return _cases(ctx, "jpeg", dataset, StreamEpochs(
        shards, IMAGENET_MEAN, IMAGENET_STD, augment="imagenet", batch_size=ctx["batch"],
        threads=ctx["workers"], resize=224,
    ))


def _cases(ctx: BenchContext, prefix: str, dataset, stream: StreamEpochs) -> dict:
    from raysys.bench import reference

    cases = {
        f"{prefix}.ray_data": stream,
        f"{prefix}.torchvision": LoaderEpochs(reference.data_loader(dataset, ctx["batch"], ctx["workers"])),
    }
    if ctx["in_process_baseline"]:
        # For reference: on a busy 2-core machine the DataLoader's processes may not pay off.
        cases[f"{prefix}.torchvision_in_process"] = LoaderEpochs(reference.data_loader(dataset, ctx["batch"], 0))
    return cases


@register_benchmark(
    "data",
    help="images/s: Parquet shards -> Ray Data stream vs torchvision dataset + DataLoader (CIFAR-10; JPEG ImageFolder)",
    full=dict(
        images=10000, jpeg_images=1000, batch=64, workers=2, torch_threads=1, jpeg=True, in_process_baseline=True,
        repeats=5, warmup=1,
    ),
    quick=dict(images=320, jpeg_images=40, batch=32, repeats=1, warmup=1),
)
def bench_data(ctx: BenchContext) -> None:
    result = ctx.result
    with torch_threads(ctx["torch_threads"]), local_ray(min_cpus=ctx["workers"]) as startup:
        result.machine["torch_threads"] = torch.get_num_threads()
        result.add_figure("ray_startup", "s", [startup], "not part of any ratio")
        suites = [("cifar", _cifar_cases)] + ([("jpeg", _jpeg_cases)] if ctx["jpeg"] else [])
        for prefix, build in suites:
            begin = now()
            cases = build(ctx)
            result.add_figure(f"{prefix}.setup", "s", [now() - begin], "write + prepare + read/materialise; not timed below")
            samples = compare(cases, repeats=ctx["repeats"], warmup=ctx["warmup"])
            for name, sample in samples.items():
                result.add_figure(name, "images/s", sample.rate().values)
            for name, sample in samples.items():
                result.add_figure(f"{name}.cpu", "CPU ms/image", sample.cpu_per_work().values, CPU_NOTE)
            result.add_ratio(f"{prefix} ray_data/torchvision", f"{prefix}.ray_data", f"{prefix}.torchvision", GOAL)
            if f"{prefix}.torchvision_in_process" in samples:
                result.add_ratio(
                    f"{prefix} ray_data/torchvision_in_process", f"{prefix}.ray_data", f"{prefix}.torchvision_in_process"
                )
    result.notes.append(
        f"both sides: batches of {ctx['batch']}, {ctx['workers']} CPU workers (DataLoader processes; "
        "Ray Data collate threads), one epoch per sample, interleaved"
    )
