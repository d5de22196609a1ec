"""The evaluation loop on each Ray Train worker: evaluators over this worker's share, totals all-reduced.

Per-image arrays (``-ed``) are gathered to rank 0 and reported as a Ray Train
checkpoint; the driver (:mod:`raysys.driver.evaluation`) logs metrics and arrays.
"""
from __future__ import annotations

import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
import torch.distributed as dist

from raysys.config.loader import from_container
from raysys.data.stream import BatchCollator, ImageFormat, iter_batches
from raysys.eval.evaluators import EvalSettings, build_evaluators, diagonal_files
from raysys.models import InputSpec, build_model
from raysys.models.weights import load_state
from raysys.train.devices import worker_device
from raysys.train.recipes import build_recipe

ARRAYS_DIR = "arrays"



def _all_reduce(values: List[float], device: torch.device) -> List[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def _gather(obj: Any) -> List[Any]:
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def eval_loop_per_worker(loop_config: Dict[str, Any]) -> None:
    """Ray Train entry point: run the evaluators over this worker's share, then report."""
    import ray
    import ray.train
    from ray.train import Checkpoint

    cfg = from_container(loop_config["config"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = worker_device()
    torch.set_num_threads(max(1, int(cfg.scaling.torch_threads or cfg.scaling.cpus_per_worker)))
    settings = EvalSettings(**loop_config["settings"])
    evaluators = build_evaluators(loop_config["evaluators"], settings)
    fmt = ImageFormat(**loop_config["format"])
    model = build_model(cfg, InputSpec(**loop_config["input"]))
    if loop_config.get("state") is not None:
        load_state(model, ray.get(loop_config["state"]), "the evaluated weights")
    model = model.to(device)
    channels_last = bool(cfg.train.channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    build_recipe(cfg).on_evaluation_start(model)  # model.eval(), unless the run's recipe evaluates otherwise
    amp = device.type == "cuda" and cfg.train.amp
    shard = ray.train.get_dataset_shard("test")
    # Offsets of shift consistency: drawn per batch, independent per worker, reproducible.
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([cfg.seed, rank, 7]).generate_state(1)[0]))
    passes = max(e.passes() for e in evaluators.values())
    with torch.no_grad():
        for p in range(passes):
            active = [e for e in evaluators.values() if e.passes() > p]
            collator = BatchCollator(fmt, loop_config["augment"], cfg.seed, p, rank)
            for batch in iter_batches(shard, collator, int(loop_config["batch_size"]), pin_memory=device.type == "cuda", device=device):
                images, labels, index = batch["image"], batch["label"], batch["index"]
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext():
                    for evaluator in active:
                        evaluator.update(model, images, labels, index, generator)
    sizes = [len(e.totals()) for e in evaluators.values()]
    totals = _all_reduce([v for e in evaluators.values() for v in e.totals()], device)
    metrics: Dict[str, float] = {}
    start = 0
    for evaluator, size in zip(evaluators.values(), sizes):
        metrics.update(evaluator.metrics(totals[start : start + size]))
        start += size
    arrays = {name: e.arrays() for name, e in evaluators.items() if e.arrays() is not None}
    gathered = _gather(arrays) if arrays else []
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if rank == 0 and gathered:
            out = Path(directory) / ARRAYS_DIR
            out.mkdir()
            for name in arrays:
                parts = [g[name] for g in gathered]
                merged = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
                for file, values in diagonal_files(merged).items():
                    np.save(out / f"{file}.npy", values)
            checkpoint = Checkpoint.from_directory(directory)
        if rank == 0 and checkpoint is None:
            # Ray Train V2's Result.metrics holds only metrics reported with a checkpoint.
            checkpoint = Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)


def _worker_entry(loop_config: Dict[str, Any]) -> None:
    # A fresh worker process: from_container and every registry lookup discover all families first.
    eval_loop_per_worker(loop_config)
