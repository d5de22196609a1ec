"""The full tier of ``bench gpu`` (``make gpu-check``): raysys and Ray on the GPU node.

The bare tier (:mod:`raysys.bench.gpu`, torch only) runs first; these steps add
raysys itself: one short ``raysys train`` of each family's preset in fp32 and in
AMP (channels_last on, as the presets train), the ``flexconv`` (full 33x33
horizon), ``mimo`` and ``stir`` benchmarks on CUDA, the Ray Data JPEG feed
against torchvision's ImageFolder + DataLoader with the same CPU workers and
against what a ResNet-50 step consumes, and DDP over NCCL across every GPU.
Data are synthetic files in the real formats (:mod:`raysys.bench.fixtures`, the
STIR emoji generator), prepared into shards as a user would.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import List

import torch

from raysys.bench.gpu import Check, Step, interleaved, resnet50_steps, run_check
from raysys.bench.registry import BenchContext, register_benchmark

# One short run per family: (preset, overrides at full size, overrides for a rehearsal, data).
FAMILY_RUNS = {
    "flexconv": ("flexconv/cifar10-flexnet7", ["data.limit=2048", "data.test_limit=512"],
                 ["flexconv.net.no_hidden=8", "flexconv.net.no_blocks=1", "flexconv.net.block_width_factors=[1.0, 1]",
                  "flexconv.kernel.no_hidden=8",
                  "train.batch_size=16", "data.limit=32", "data.test_limit=16"], "cifar10"),
    "mimoconv": ("mimoconv/cifar10-mimonet28-10-n4", ["data.limit=2048", "data.test_limit=512"],
                 ["model.name=MIMONet-10", "mimo.width=1", "mimo.initial_width=1", "train.batch_size=16",
                  "data.limit=32", "data.test_limit=16"], "cifar10"),
    "antialiased": ("antialiased/scratch-resnet50_lpf4",
                    ["train.batch_size=64", "data.limit=512", "data.test_limit=128", "evaluate.after_training=[accuracy]"],
                    ["model.name=resnet18_lpf4", "data.resize=32", "train.batch_size=4", "data.limit=16",
                     "data.test_limit=8", "evaluate.after_training=[accuracy]"], "imagenet"),
    "stir": ("stir/emoji", ["data.limit=576", "data.test_limit=288"], ["data.limit=32", "data.test_limit=16"], "stir"),
}
PRECISIONS = {"fp32": "train.amp=false", "amp": "train.amp=true"}


# -- data in the real formats -------------------------------------------------------------------
def _data(check: Check, kind: str) -> Path:
    """Shards (or the STIR npz folder) of ``kind`` under the check's workdir, made once."""
    from pipelines.prepare import prepare

    from raysys.bench.fixtures import write_cifar10, write_imagefolder

    out = check.workdir / f"data-{kind}"
    if (out / ".done").is_file():
        return out
    small = check.rehearse
    if kind == "cifar10":
        write_cifar10(check.workdir / "cifar10-src", train_per_batch=64 if small else 600, test=32 if small else 512)
        prepare("cifar10", str(check.workdir / "cifar10-src"), str(out))
    elif kind == "imagenet":
        write_imagefolder(check.workdir / "imagefolder", classes=10, train_per_class=4 if small else 60,
                          val_per_class=2 if small else 15)
        prepare("imagenet", str(check.workdir / "imagefolder"), str(out))
    elif kind == "stir":
        from pipelines.stir.emoji import offline_glyphs
        from pipelines.stir.generate import generate

        generate("emoji", str(out), glyphs=offline_glyphs())  # FA 6 where 5.15.3 is not cached (no network)
    (out / ".done").touch()
    return out


def _train(check: Check, preset: str, overrides: List[str]) -> dict:
    """One ``raysys train`` on this node: wall seconds, images/s and the device its run recorded."""
    import time

    from mlflow.tracking import MlflowClient

    from raysys.config import load_config
    from raysys.driver.training import run_training

    uri = f"sqlite:///{check.workdir / 'mlflow.db'}"
    cfg = load_config(preset, [
        "train.epochs=1", "train.channels_last=true", f"scaling.use_gpu={'false' if check.rehearse else 'true'}",
        f"tracking.uri={uri}", f"checkpoint.storage_path={check.workdir / 'runs'}", "tracking.log_checkpoint=false",
        *overrides,
    ])
    begin = time.perf_counter()
    summary = run_training(cfg, progress=False, rerun=True)
    seconds = time.perf_counter() - begin
    run = MlflowClient(tracking_uri=uri).get_run(summary["run_id"])
    return {"seconds": seconds, "images_per_sec": run.data.metrics.get("images_per_sec"),
            "device": run.data.tags.get("raysys.device", "?"), "test_acc": summary.get("test_accuracy")}


def step_family_runs(check: Check, step: Step) -> None:
    expected = "cpu" if check.rehearse else "cuda"
    for family, (preset, full, tiny, data) in FAMILY_RUNS.items():
        path = _data(check, data)
        for precision, flag in PRECISIONS.items():
            name = f"{family}.{precision}"
            got = _train(check, preset, [f"data.path={path}", flag, *(tiny if check.rehearse else full)])
            step.figure(f"{name}.run", "s", [got["seconds"]], f"{preset}: 1 epoch, start to finish (Ray Train start included)")
            if got["images_per_sec"]:
                step.figure(f"{name}.train", "images/s", [got["images_per_sec"]], "the run's own images_per_sec")
            if not str(got["device"]).startswith(expected):
                raise AssertionError(f"{name} trained on {got['device']}, expected {expected}")
    step.notes.append(f"every run's raysys.device tag (the device its workers were given) is {expected}; channels_last on")


# -- the in-process benchmarks on CUDA ------------------------------------------------------------
def _copy_bench(step: Step, result) -> None:
    for name, figure in result.figures.items():
        step.figure(name, figure.unit, figure.stats.values, figure.note)
    for name, ratio in result.ratios.items():
        step.ratios[name] = {"value": ratio.value, "numerator": ratio.numerator, "denominator": ratio.denominator,
                             "claim": f"goal {ratio.goal}" if ratio.goal else ""}
    step.notes += list(result.notes)


def _bench(name: str, overrides: List[str]):
    def run(check: Check, step: Step) -> None:
        from raysys.bench.runner import run_benchmark

        _copy_bench(step, run_benchmark(name, quick=check.rehearse, overrides=overrides, workdir=str(check.workdir / name)))
    return run


def step_stir_bench(check: Check, step: Step) -> None:
    _bench("stir", [f"path={_data(check, 'stir')}", "models=all" if not check.rehearse else "models=standard,pixel_pool"])(check, step)
    if "pixel_pool/standard" in step.ratios:
        step.ratios["pixel_pool/standard"]["claim"] = "about 80x on the paper's GPU (Table 2)"
    step.notes.append("the paper's Table 2 seconds per epoch are not in the references here; its pixel_pool/standard "
                      "ratio (about 80x) is the figure to read against")


# -- the data feed ----------------------------------------------------------------------------
def bench_data_params() -> dict:
    from raysys.bench.registry import load_benchmarks

    return load_benchmarks().get("data").params(False)


def step_data_feed(check: Check, step: Step) -> None:
    from raysys.bench import data as bench_data
    from raysys.bench.ray_local import local_ray
    from raysys.bench.result import BenchResult
    from raysys.bench.timing import compare

    workers = 1 if check.rehearse else max(1, min(14, (os.cpu_count() or 2) - 2))
    batch = 4 if check.rehearse else 64
    # bench data's own parameters (its JPEG suite reads them), sized for this node
    params = {**bench_data_params(), "jpeg_images": 40 if check.rehearse else 2000, "batch": batch, "workers": workers,
              "in_process_baseline": False}
    if check.rehearse:
        params.update({key: value for key, value in (("jpeg_width", 96), ("jpeg_height", 72)) if key in params})
    workdir = check.workdir / "data-feed"
    workdir.mkdir(exist_ok=True)
    with local_ray(min_cpus=workers):
        cases = bench_data._jpeg_cases(BenchContext(params, workdir, BenchResult("gpu.data_feed", params), check.rehearse))
        samples = compare(cases, repeats=check.sizes.repeats, warmup=1)
    for name, sample in samples.items():
        step.figure(name.split(".", 1)[1], "images/s", sample.rate().values, f"JPEG -> 224 crops, {workers} CPU workers")
    consume = resnet50_steps(check, amp=check.cuda, channels_last=True, batch=batch)
    consume()  # warm-up: cuDNN picks its algorithms
    step.figure("resnet50_step", "images/s", interleaved({"step": consume}, check.device, check.sizes.repeats, 0)["step"],
                f"what a ResNet-50 training step consumes (AMP={check.cuda}, channels_last, batch {batch})")
    step.ratio("ray_data/torchvision", "ray_data", "torchvision")
    step.ratio("ray_data/resnet50_step", "ray_data", "resnet50_step", ">= 1: the feed keeps the GPU busy")
    step.ratio("torchvision/resnet50_step", "torchvision", "resnet50_step", ">= 1: the feed keeps the GPU busy")


# -- DDP over NCCL ----------------------------------------------------------------------------
def step_ddp(check: Check, step: Step) -> None:
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not check.rehearse and gpus < 2:
        step.skip(f"skipped: DDP over NCCL needs 2 or more GPUs, this node has {gpus}")
        return
    workers = 2 if check.rehearse else gpus
    limit = 64 if check.rehearse else 2048 * workers
    got = _train(check, "cifar-resnet/cifar10-resnet20", [
        f"data.path={_data(check, 'cifar10')}", f"scaling.num_workers={workers}", f"data.limit={limit}",
        "data.test_limit=64", "train.amp=true",
    ])
    step.figure("run", "s", [got["seconds"]], f"{workers} workers, 1 epoch")
    if got["images_per_sec"]:
        step.figure("train", "images/s", [got["images_per_sec"]], "rank 0's images_per_sec")
    step.notes.append(f"{workers} Ray Train workers, backend {'gloo on CPU (rehearsal)' if check.rehearse else 'NCCL'}; "
                      f"device {got['device']}")


FULL_STEPS = {
    "family_runs": step_family_runs,
    "flexconv_paths": _bench("flexconv", ["sizes=full", "paths=direct,fft,auto"]),
    "mimo_throughput": _bench("mimo", []),
    "stir_epoch_times": step_stir_bench,
    "data_feed": step_data_feed,
    "ddp_nccl": step_ddp,
}


@register_benchmark(
    "gpu",
    help="make gpu-check: each family on CUDA (fp32, AMP), conv paths, MIMO n=1,2,4, STIR s/epoch, data feed, DDP",
    full=dict(tier="full", out="gpu-check", steps="", rehearse=False),
    quick=dict(rehearse=True),
)
def bench_gpu(ctx: BenchContext) -> None:
    from raysys.bench.ray_local import local_ray
    from raysys.errors import ConfigError, TrainingError

    if ctx["tier"] not in ("bare", "full"):
        raise ConfigError(f"bad value {ctx['tier']!r} for benchmark parameter 'tier': one of bare, full")
    only = [s.strip() for s in str(ctx["steps"]).split(",") if s.strip()] or None
    with local_ray() if ctx["tier"] == "full" else contextlib.nullcontext():
        try:
            report = run_check(ctx["tier"], rehearse=ctx["rehearse"], out=Path(ctx["out"]), workdir=ctx.workdir, only=only,
                               full_steps=FULL_STEPS)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    result = ctx.result
    for name, step in report["steps"].items():
        for figure, data in step["figures"].items():
            result.add_figure(f"{name}.{figure}", data["unit"], data["values"], data["note"])
        for ratio, data in step["ratios"].items():
            result.add_ratio(f"{name} {ratio}", f"{name}.{data['numerator']}", f"{name}.{data['denominator']}")
        result.notes += [f"{name}: {step['status']}: {note.splitlines()[0]}" for note in step["notes"][:1]]
    result.notes.append(f"wrote {report['files']['json']} and {report['files']['markdown']}")
    if report["failed"]:
        raise TrainingError(f"gpu-check: steps failed: {', '.join(report['failed'])} (see {report['files']['markdown']})")
