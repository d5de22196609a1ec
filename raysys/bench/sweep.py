"""``bench sweep``: short STIR trainings through ``raysys sweep``, packed and not, against fresh plain processes.

``trainings`` STIR trainings (emoji, scenario 2, ``standard``, lr 1e-3, ``epochs`` epochs each,
seeds 1..``trainings``), three ways, interleaved round by round (ABBA):

- ``sweep_packed``: ``run_sweep`` (what ``raysys sweep`` runs) of a 1-row space with
  ``seeds_per_trial``: one Tune trial, one TorchTrainer, per pack of seeds.
- ``sweep_unpacked``: the same space with ``seeds_per_trial=1``: one Tune trial and one
  TorchTrainer per seed.
- ``plain_processes``: the same trainings as fresh ``python -m raysys.bench.plain_stir``
  processes in a row (the original's shell loop over ``scripts/train.py``): torch, the npz
  in memory, a DataLoader; no tracking, no checkpoints.

``max_concurrent`` (default 1) trainings at a time on the sweep side; the plain side runs one
at a time. Each sweep call logs to its own MLflow experiment and checkpoint folder (one
sqlite store), so every call trains from scratch. Ray is started before the timing (its
start-up is reported, not in the ratios), as ``bench train-overhead`` does. The emoji data
comes from ``path`` (``raysys stir generate emoji`` output: shards and ``emoji.npz``) or is
generated into the scratch folder.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Sequence

import yaml

from raysys.bench.ray_local import local_ray
from raysys.bench.registry import BenchContext, register_benchmark
from raysys.bench.result import Goal
from raysys.bench.timing import compare

GOAL = Goal("<=", 1.2)
PRESET = "stir/emoji"
MODEL = "standard"
EVALUATION = 2


def _emoji(path: str, workdir: Path) -> Path:
    """A folder holding the STIR emoji shards and ``emoji.npz``: ``path``, else generated in ``workdir``."""
    given = Path(path)
    if (given / "manifest.json").is_file() and (given / "emoji.npz").is_file():
        return given.resolve()
    out = workdir / "stir-emoji"
    if not (out / "manifest.json").is_file():
        from pipelines.stir.emoji import offline_glyphs
        from pipelines.stir.generate import generate

        generate("emoji", str(out), glyphs=offline_glyphs(), overwrite=True)  # timing only: FA 6 if 5.15.3 is not cached
    return out


def write_space(path: Path, data: Path, *, trainings: int, epochs: int, threads: int, limit: int, test_limit: int) -> Path:
    """The 1-row space of the trainings (seeds 1..trainings)."""
    overrides = [
        f"model.name=stir_{MODEL}", f"stir.evaluation={EVALUATION}", "train.lr=0.001", f"data.path={data}",
        f"train.epochs={epochs}", "scaling.num_workers=1", f"scaling.cpus_per_worker={threads}",
        f"scaling.torch_threads={threads}", f"data.limit={limit}", f"data.test_limit={test_limit}",
        f"tracking.uri=sqlite:///{path.parent / 'mlflow.db'}",
    ]
    space = {"name": "bench-sweep", "preset": PRESET, "overrides": overrides, "seeds": f"1-{trainings}"}
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


class SweepCase:
    """Each call is one ``run_sweep`` of the space, into a fresh experiment and checkpoint folder; returns trainings."""

    _numbers = itertools.count()

    def __init__(self, space: Path, workdir: Path, fields: Sequence[str]):
        self.space, self.workdir, self.fields = space, workdir, list(fields)

    def __call__(self) -> int:
        from raysys.tune.space import load_space
        from raysys.tune.sweep import run_sweep

        number = next(self._numbers)
        overrides = [*self.fields, f"experiment=bench-sweep-{number}",
                     f"checkpoint.storage_path={self.workdir / f'runs-{number}'}"]
        summary = run_sweep(load_space(self.space, overrides), overrides=overrides)
        if summary.failed or summary.skipped:
            raise RuntimeError(f"bench sweep: {len(summary.failed)} trainings failed, {summary.skipped} skipped: "
                               + "; ".join(f"{o.run_name}: {o.reason}" for o in summary.failed))
        return summary.started


class PlainProcesses:
    """Each call runs ``seeds`` trainings as fresh ``python -m raysys.bench.plain_stir`` processes, one after another."""

    def __init__(self, npz: Path, seeds: Sequence[int], *, epochs: int, threads: int, limit: int, test_limit: int):
        self.seeds = list(seeds)
        self.args = ["--npz", str(npz), "--model", MODEL, "--evaluation", str(EVALUATION), "--epochs", str(epochs),
                     "--threads", str(threads), "--limit", str(limit), "--test-limit", str(test_limit)]
        package_root = str(Path(__file__).resolve().parents[2])
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
        self.seconds: List[List[float]] = []  # per call: each process's own training seconds

    def __call__(self) -> int:
        import json

        inside = []
        for seed in self.seeds:
            done = subprocess.run([sys.executable, "-m", "raysys.bench.plain_stir", *self.args, "--seed", str(seed)],
                                  env=self.env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"plain STIR training (seed {seed}) failed: {done.stderr.strip()[-2000:]}")
            inside.append(float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"]))
        self.seconds.append(inside)
        return len(self.seeds)


@register_benchmark(
    "sweep",
    help="wall time: short STIR trainings via raysys sweep (seeds_per_trial packed and not) vs fresh plain processes",
    full=dict(trainings=8, epochs=3, seeds_per_trial=8, max_concurrent=1, threads=2, limit=0, test_limit=0,
              repeats=2, warmup=1, path="data/stir/emoji"),
    quick=dict(trainings=2, epochs=1, seeds_per_trial=2, limit=64, test_limit=64, repeats=1, warmup=0),
)
def bench_sweep(ctx: BenchContext) -> None:
    result = ctx.result
    trainings, epochs, threads = int(ctx["trainings"]), int(ctx["epochs"]), int(ctx["threads"])
    if int(ctx["seeds_per_trial"]) < 2:
        raise ValueError("seeds_per_trial must be >= 2: the packed case packs seeds")
    data = _emoji(str(ctx["path"]), ctx.workdir)
    sizes = dict(threads=threads, limit=int(ctx["limit"]), test_limit=int(ctx["test_limit"]))
    space = write_space(ctx.workdir / "bench-sweep.yaml", data, trainings=trainings, epochs=epochs, **sizes)
    concurrency = f"max_concurrent={int(ctx['max_concurrent'])}"
    packed = SweepCase(space, ctx.workdir, [concurrency, f"seeds_per_trial={int(ctx['seeds_per_trial'])}"])
    unpacked = SweepCase(space, ctx.workdir, [concurrency, "seeds_per_trial=1"])
    plain = PlainProcesses(data / "emoji.npz", range(1, trainings + 1), epochs=epochs, **sizes)
    cases = {"sweep_packed": packed, "sweep_unpacked": unpacked, "plain_processes": plain}
    # Warm-up: one 1-epoch training of each side on 64 rows (Ray's worker pool, the MLflow store, the page cache).
    small = write_space(ctx.workdir / "bench-sweep-warmup.yaml", data, trainings=2, epochs=1,
                        **dict(sizes, limit=64, test_limit=64))
    warmups = {
        "sweep_packed": SweepCase(small, ctx.workdir, [concurrency, "seeds_per_trial=2"]),
        "sweep_unpacked": SweepCase(small, ctx.workdir, [concurrency, "seeds_per_trial=1", "seeds=[1]"]),
        "plain_processes": PlainProcesses(data / "emoji.npz", [1], epochs=1, **dict(sizes, limit=64, test_limit=64)),
    }
    with local_ray(min_cpus=threads + 1) as startup:
        result.add_figure("ray_startup", "s", [startup], "before any timing; not part of the ratios")
        samples = compare(cases, repeats=int(ctx["repeats"]), warmup=int(ctx["warmup"]), warmup_cases=warmups)
    for name, sample in samples.items():
        result.add_figure(name, "s", sample.seconds, f"{trainings} trainings")
    timed = plain.seconds[-int(ctx["repeats"]):]
    result.add_figure("plain_processes.inside", "s", [sum(s) for s in timed],
                      "inside the processes, from after Python's and torch's start-up")
    result.add_ratio("sweep_packed/plain_processes", "sweep_packed", "plain_processes", GOAL)
    result.add_ratio("sweep_unpacked/plain_processes", "sweep_unpacked", "plain_processes")
    result.add_ratio("sweep_packed/sweep_unpacked", "sweep_packed", "sweep_unpacked")
    result.notes.append(
        f"STIR emoji, scenario {EVALUATION}, stir_{MODEL}, {epochs} epochs, seeds 1-{trainings}; "
        f"seeds_per_trial={ctx['seeds_per_trial']} (packed) and 1 (unpacked), {concurrency}; 1 Ray Train worker, "
        f"{threads} CPUs and torch threads; plain: {threads} torch threads, one process per training"
    )
    if int(ctx["limit"]) or int(ctx["test_limit"]):
        result.notes.append(f"rows limited: data.limit={ctx['limit']}, data.test_limit={ctx['test_limit']} (both sides)")
