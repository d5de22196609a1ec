"""``bench train-overhead``: wall time of ``raysys train`` against a plain PyTorch script.

CIFAR-10 ResNet-20 on a fixed subset (``images`` training and ``test_images``
test images, written as CIFAR pickle batches), ``epochs`` epochs, each followed
by evaluation. raysys: ``prepare`` -> shards -> ``run_training`` with one Ray
Train worker (as ``raysys train`` runs it: Ray Data, DDP, checkpoints, MLflow).
Plain: torchvision ``CIFAR10`` + DataLoader and a plain loop (``plain.py``).
Same model, batch size and torch threads; the DataLoader gets as many worker
processes as the raysys stream has collate threads. The raysys time counts
from a running Ray; Ray's start-up is reported on its own.

A third case, interleaved with the other two, is a ``TorchTrainer.fit`` of a
function that returns at once (same ScalingConfig): Ray Train's own per-run
cost, which every Ray Train run pays whatever it trains. ``raysys_train`` minus
it, per round, is what raysys adds on top of Ray Train.
"""
from __future__ import annotations

from raysys.bench.fixtures import write_cifar10
from raysys.bench.plain import PlainTraining
from raysys.bench.ray_local import local_ray
from raysys.bench.registry import BenchContext, register_benchmark
from raysys.bench.result import Goal
from raysys.bench.timing import compare, default_device
from raysys.bench.training import EmptyRayTrainFit, RaysysTraining, bench_config
from raysys.data.stream import PREFETCH_BATCHES

GOAL = Goal("<=", 1.15)


def _prepared(ctx: BenchContext):
    from pipelines.prepare import prepare

    source, shards = ctx.workdir / "cifar10", ctx.workdir / "cifar10-shards"
    write_cifar10(source, train_per_batch=ctx["images"] // 5, test=ctx["test_images"])
    prepare("cifar10", str(source), str(shards))
    return source, shards


@register_benchmark(
    "train-overhead",
    help="wall time: raysys train (1 Ray Train worker) vs a plain PyTorch loop, CIFAR-10 ResNet-20",
    full=dict(images=5000, test_images=1000, epochs=2, batch=128, threads=2, repeats=3, warmup=1, warmup_images=640),
    quick=dict(images=160, test_images=40, epochs=1, batch=32, repeats=1, warmup=0, warmup_images=64),
)
def bench_train_overhead(ctx: BenchContext) -> None:
    result = ctx.result
    if ctx["images"] % 5:
        raise ValueError("images must be a multiple of 5 (five CIFAR batch files)")
    source, shards = _prepared(ctx)
    config = dict(epochs=ctx["epochs"], batch=ctx["batch"], workers=1, threads=ctx["threads"])
    cfg = bench_config(shards, ctx.workdir, **config)
    with local_ray(min_cpus=ctx["threads"] + 1) as startup:
        result.add_figure("ray_startup", "s", [startup], "before any timing; not part of the ratio")
        raysys_runs = RaysysTraining(shards, ctx.workdir, ctx["images"], **config)
        plain = dict(data_workers=PREFETCH_BATCHES, threads=ctx["threads"])
        plain_runs = PlainTraining(cfg, source, **plain)
        cases = {"raysys_train": raysys_runs, "plain_pytorch": plain_runs, "ray_train_empty_fit": EmptyRayTrainFit(cfg)}
        # Warm-up: one short run of each side (1 epoch on ``warmup_images``): Ray's worker
        # pool, the MLflow database, oneDNN's kernels and the file cache are warm afterwards.
        small, limit = dict(config, epochs=1), ctx["warmup_images"]
        warmups = {
            "raysys_train": RaysysTraining(shards, ctx.workdir, ctx["images"], limit=limit, **small),
            "plain_pytorch": PlainTraining(bench_config(shards, ctx.workdir, **small), source, limit=limit, **plain),
        }
        samples = compare(cases, repeats=ctx["repeats"], warmup=ctx["warmup"], warmup_cases=warmups, device=default_device())
        raysys_epochs = list(raysys_runs.epoch_metric("epoch_time").values())
    for name, sample in samples.items():
        result.add_figure(name, "s", sample.seconds)
    result.add_ratio("raysys_train/plain_pytorch", "raysys_train", "plain_pytorch", GOAL)
    # Where the time goes: the training passes alone (last epoch: no start-up in it), and the rest.
    result.add_figure("raysys_train.last_epoch", "s", [times[-1] for times in raysys_epochs], "training pass only")
    result.add_figure("plain_pytorch.last_epoch", "s", [times[-1] for times in plain_runs.epoch_times], "training pass only")
    result.add_ratio("last_epoch raysys/plain", "raysys_train.last_epoch", "plain_pytorch.last_epoch")
    fixed = [total - sum(times) for total, times in zip(samples["raysys_train"].seconds, raysys_epochs)]
    result.add_figure("raysys_train.outside_epochs", "s", fixed, "start-up, evaluation, checkpoints, MLflow, shutdown")
    plain_fixed = [total - sum(times) for total, times in zip(samples["plain_pytorch"].seconds, plain_runs.epoch_times)]
    result.add_figure("plain_pytorch.outside_epochs", "s", plain_fixed, "start-up, evaluation")
    added = [total - empty for total, empty in zip(samples["raysys_train"].seconds, samples["ray_train_empty_fit"].seconds)]
    result.add_figure("raysys_train-ray_train_empty_fit", "s", added, "raysys train minus Ray Train's own per-run cost, per round")
    result.add_ratio("(raysys_train-ray_train_empty_fit)/plain_pytorch", "raysys_train-ray_train_empty_fit", "plain_pytorch")
    result.notes.append(
        f"{ctx['images']} train + {ctx['test_images']} test images, {ctx['epochs']} epochs, batch {ctx['batch']}, "
        f"{ctx['threads']} torch threads, {PREFETCH_BATCHES} data workers on each side; "
        f"warm-up: one 1-epoch run of each side on {ctx['warmup_images']} images"
    )
