"""``bench data``: images/s of the raysys input pipeline against torchvision's DataLoader.

Both sides read the same files and do the same work per image:

* CIFAR-10 pickle batches: torchvision ``CIFAR10`` + RandomCrop(32, pad 4), flip,
  ToTensor, Normalize in a DataLoader; against ``prepare cifar10`` -> Parquet shards ->
  the production stream (augmentation ``resnet``).
* A JPEG ImageFolder: torchvision ``ImageFolder`` + RandomResizedCrop(224), flip,
  ToTensor, Normalize; against ``prepare imagenet`` -> JPEG shards -> the stream
  (augmentation ``imagenet``); the same stream decoding every image whole
  (``jpeg.ray_data_full``: ``RAYSYS_JPEG_WINDOW=0``, the stream before partial
  decoding; :mod:`raysys.data.jpeg_window`); and with reduced-size decoding
  (``jpeg.ray_data_draft``: ``data.jpeg_draft=true``).
* The JPEG decode floor: CPU ms per image of decoding alone, in this process, on
  the shards' bytes: full size (``decode_jpeg``), only each RandomResizedCrop(224)
  window (``jpeg.decode_window``, as the stream decodes), and as draft mode decodes
  (each image at the smallest DCT scale its crop allows), with the share of images
  that crop allowed to decode reduced.
* Where the stream's collate spends it: CPU ms per image of each of its steps on
  one thread (``jpeg.stage.*``; :mod:`raysys.bench.jpeg_stages`), beside the floor.

Batches of ``batch`` normalised float images; ``workers`` CPU workers on each side:
DataLoader worker processes, and Ray Data collate threads on a Ray of that many CPUs.
For reference, the DataLoader also runs in process (``num_workers=0``).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from pathlib import Path
from typing import List

import torch

from raysys.bench.fixtures import write_cifar10, write_imagefolder
from raysys.bench.ray_local import local_ray
from raysys.bench.registry import BenchContext, register_benchmark
from raysys.bench.result import Goal
from raysys.bench.stream_epochs import LoaderEpochs, StreamEpochs
from raysys.bench.timing import compare, now, torch_threads

GOAL = Goal(">=", 2.0)
JPEG_GOAL = Goal(">=", 2.5)  # issue 19: the JPEG stream, decoding included (with or without draft mode)
CROP = 224
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


def _jpeg_cases(ctx: BenchContext, whole_decodes: bool = False) -> dict:
    """The JPEG cases (``bench antialias`` and ``bench gpu`` run them too); ``whole_decodes`` adds ``jpeg.ray_data_full``."""
    from raysys.bench import reference
    from raysys.data.formats.base import IMAGENET_MEAN, IMAGENET_STD

    source, shards = ctx.workdir / "imagefolder", ctx.workdir / "imagenet-shards"
    write_imagefolder(
        source, classes=10, train_per_class=max(1, ctx["jpeg_images"] // 10), val_per_class=1,
        size=(ctx["jpeg_width"], ctx["jpeg_height"]),
    )
    _prepare("imagenet", source, shards)
    dataset = reference.image_folder(source / "train", reference.imagenet_transform(train=True))

    def stream() -> StreamEpochs:
        return StreamEpochs(
            shards, IMAGENET_MEAN, IMAGENET_STD, augment="imagenet", batch_size=ctx["batch"],
            threads=ctx["workers"], resize=CROP,
        )

    cases = _cases(ctx, "jpeg", dataset, stream())
    if whole_decodes:
        cases["jpeg.ray_data_full"] = WholeDecodes(stream())
    draft = stream()
    draft.fmt = dataclasses.replace(draft.fmt, jpeg_draft=True)  # as data.jpeg_draft=true sets it
    cases["jpeg.ray_data_draft"] = draft
    return cases


def shard_table(shards: Path):
    """The train split's ``image`` column as one Arrow table, as the stream reads it."""
    import pyarrow.parquet as pq

    from raysys.data.shards import load_manifest, shard_files

    return pq.read_table(shard_files(str(shards), load_manifest(str(shards)), "train"), columns=["image"])


def shard_jpegs(shards: Path) -> List[torch.Tensor]:
    """The train split's encoded JPEGs, as the stream reads them."""
    from raysys.data.jpeg import encoded_tensors

    return encoded_tensors(shard_table(shards).column("image"))


class WholeDecodes:
    """An epoch of ``stream`` with partial decoding off (``RAYSYS_JPEG_WINDOW=0``): every image decoded whole."""

    def __init__(self, stream: StreamEpochs):
        self.stream = stream

    def __call__(self) -> int:
        from raysys.data.jpeg_window import ENV

        before = os.environ.get(ENV)
        os.environ[ENV] = "0"
        try:
            return self.stream()
        finally:
            if before is None:
                os.environ.pop(ENV)
            else:
                os.environ[ENV] = before


class DecodeOnly:
    """One pass of decoding alone over ``blobs`` in this thread: full size, each crop's window, or as draft decodes.

    The windows are RandomResizedCrop(224)'s, seeded, so every pass decodes the same
    ones. Draft: each image at the smallest DCT scale its window allows;
    ``reductions`` holds them.
    ``cpu_ms`` holds each pass's CPU ms per image of this thread alone (the process-wide
    count would include Ray's threads and processes).
    """

    def __init__(self, blobs: List[torch.Tensor], mode: str):
        self.blobs, self.mode = blobs, mode
        self.reductions: List[int] = []
        self.cpu_ms: List[float] = []

    def __call__(self) -> int:
        from raysys.data import jpeg

        generator, policy = torch.Generator().manual_seed(0), jpeg.CROPS.get("random-resized")
        start = time.thread_time()
        if self.mode == "draft":
            self.reductions = [jpeg.draft_decode(blob, policy, CROP, generator)[2] for blob in self.blobs]
        elif self.mode == "window":
            for blob in self.blobs:
                jpeg.crop_pixels(blob, policy, CROP, generator)
        else:
            for blob in self.blobs:
                jpeg.decode_tensors([blob])
        self.cpu_ms.append((time.thread_time() - start) * 1e3 / max(1, len(self.blobs)))
        return len(self.blobs)


def _decode_floor(ctx: BenchContext) -> None:
    from raysys.bench.jpeg_stages import STAGES, CollateStages
    from raysys.data import jpeg_window
    from raysys.data.formats.base import IMAGENET_MEAN, IMAGENET_STD
    from raysys.data.jpeg import encoded_tensors

    result = ctx.result
    table = shard_table(ctx.workdir / "imagenet-shards")
    blobs = encoded_tensors(table.column("image"))
    batches = [table.slice(start, ctx["batch"]) for start in range(0, table.num_rows, ctx["batch"])]
    stages = CollateStages(batches, CROP, IMAGENET_MEAN, IMAGENET_STD)
    cases = {"jpeg.decode_full": DecodeOnly(blobs, "full"), "jpeg.decode_draft": DecodeOnly(blobs, "draft")}
    if jpeg_window.available():
        cases["jpeg.decode_window"] = DecodeOnly(blobs, "window")
    samples = compare({**cases, "jpeg.stages": stages}, repeats=ctx["repeats"], warmup=ctx["warmup"])
    for name in cases:
        result.add_figure(name, "images/s", samples[name].rate().values, "decoding alone, one thread of this process")
        timed = cases[name].cpu_ms[ctx["warmup"]:]  # the timed passes, after the warm-up ones
        result.add_figure(f"{name}.cpu", "CPU ms/image", timed, "decoding alone: this thread's CPU time")
    totals = [0.0] * ctx["repeats"]
    for stage in STAGES:
        timed = stages.cpu_ms[stage][ctx["warmup"]:]
        totals = [total + value for total, value in zip(totals, timed)]
        result.add_figure(f"jpeg.stage.{stage.replace(' ', '_')}.cpu", "CPU ms/image", timed,
                          "one step of the stream's collate, one thread (thread CPU time)")
    result.add_figure("jpeg.stages.cpu", "CPU ms/image", totals, "the collate's steps together, one thread")
    reductions = cases["jpeg.decode_draft"].reductions
    reduced = sum(r > 1 for r in reductions) / max(1, len(reductions))
    result.add_figure("jpeg.draft_reduced_share", "% of images", [100 * reduced],
                      f"decoded at 1/2..1/8 for RandomResizedCrop({CROP}); the rest at full size")
    result.add_ratio("jpeg decode_draft/decode_full", "jpeg.decode_draft", "jpeg.decode_full")
    if "jpeg.decode_window" in cases:
        result.add_ratio("jpeg decode_window/decode_full", "jpeg.decode_window", "jpeg.decode_full")


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
        images=10000, jpeg_images=1000, jpeg_width=500, jpeg_height=375, batch=64, workers=2, torch_threads=1,
        jpeg=True, in_process_baseline=True, repeats=5, warmup=1,
    ),
    quick=dict(images=320, jpeg_images=40, batch=32, repeats=1, warmup=1),
)
def bench_data(ctx: BenchContext) -> None:
    result = ctx.result
    with torch_threads(ctx["torch_threads"]), local_ray(min_cpus=ctx["workers"]) as startup:
        result.machine["torch_threads"] = torch.get_num_threads()
        result.add_figure("ray_startup", "s", [startup], "not part of any ratio")
        jpeg_cases = functools.partial(_jpeg_cases, whole_decodes=True)
        suites = [("cifar", _cifar_cases)] + ([("jpeg", jpeg_cases)] if ctx["jpeg"] else [])
        for prefix, build in suites:
            begin = now()
            cases = build(ctx)
            result.add_figure(f"{prefix}.setup", "s", [now() - begin], "write + prepare + read/materialise; not timed below")
            samples = compare(cases, repeats=ctx["repeats"], warmup=ctx["warmup"])
            for name, sample in samples.items():
                result.add_figure(name, "images/s", sample.rate().values)
            for name, sample in samples.items():
                result.add_figure(f"{name}.cpu", "CPU ms/image", sample.cpu_per_work().values, CPU_NOTE)
            goal = JPEG_GOAL if prefix == "jpeg" else GOAL
            result.add_ratio(f"{prefix} ray_data/torchvision", f"{prefix}.ray_data", f"{prefix}.torchvision", goal)
            if f"{prefix}.torchvision_in_process" in samples:
                result.add_ratio(
                    f"{prefix} ray_data/torchvision_in_process", f"{prefix}.ray_data", f"{prefix}.torchvision_in_process"
                )
            if prefix == "jpeg":
                result.add_ratio("jpeg ray_data_full/torchvision", "jpeg.ray_data_full", "jpeg.torchvision")
                result.add_ratio("jpeg ray_data/ray_data_full", "jpeg.ray_data", "jpeg.ray_data_full")
                result.add_ratio("jpeg ray_data_draft/torchvision", "jpeg.ray_data_draft", "jpeg.torchvision", JPEG_GOAL)
                result.add_ratio("jpeg ray_data_draft/ray_data", "jpeg.ray_data_draft", "jpeg.ray_data")
                _decode_floor(ctx)
    result.notes.append(
        f"both sides: batches of {ctx['batch']}, {ctx['workers']} CPU workers (DataLoader processes; "
        "Ray Data collate threads), one epoch per sample, interleaved"
    )
