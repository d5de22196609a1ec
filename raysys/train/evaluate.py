"""Distributed evaluation: a Ray Train run whose loop only evaluates.

The validation split streams from the Parquet shards through Ray Data (JPEG
decoding and cropping happen in the stream's collate function, as in
training) and is split across the workers without padding or dropping, so
each image is counted once. Every worker runs the evaluators of
:mod:`raysys.eval.evaluators` on its share; their totals are all-reduced,
per-image arrays (``-ed``) are gathered to rank 0 and reported as a Ray Train
checkpoint, and the driver logs metrics and arrays to MLflow: into the
training run (``evaluate.after_training``, or ``--run-id``) or a run of its own.

Everything that can be refused is refused before Ray starts: the evaluator
names, the split, the shards, the weights file and its fit to the model.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from raysys.config.loader import flatten, from_container, to_yaml
from raysys.data.formats import get_dataset
from raysys.data.normalization import normalization
from raysys.data.shards import load_manifest, verify_shards
from raysys.data.stream import BatchCollator, ImageFormat, build_datasets, image_format, iter_batches, split_rows, train_eval_data_config
from raysys.errors import ConfigError, DataError, TrainingError
from raysys.eval.crops import FULL_IMAGE_AUGMENT
from raysys.eval.evaluators import EVALUATORS, EvalSettings, build_evaluators, diagonal_files, image_side
from raysys.models import InputSpec, build_model
from raysys.models.weights import load_state, read_state_dict
from raysys.track import runs
from raysys.track.uri import check_reachable, redact
from raysys.train.locations import pin_locations
from raysys.train.run import closing_run
from raysys.train.session import check_capacity, ensure_ray, wants_gpu, worker_scaling

ARRAYS_DIR = "arrays"


@dataclass
class EvalPlan:
    """The checked inputs of one evaluation."""

    names: List[str]
    settings: EvalSettings
    manifest: dict
    fmt: ImageFormat
    spec: InputSpec
    split: str
    limit: int
    rows: int
    augment: str
    batch_size: int


def plan_evaluation(cfg: DictConfig, names: Sequence[str]) -> EvalPlan:
    """Check the evaluators, the split and its shards; derive image size and model input."""
    settings = EvalSettings.from_config(cfg)
    if settings.crop <= 0:
        raise ConfigError("evaluate.crop is 0 and so is data.resize: set the side the model sees (224 for ImageNet)")
    if not names:
        raise ConfigError(f"evaluate.metrics is empty; choose from {EVALUATORS.names()}")
    evaluators = build_evaluators(list(names), settings)
    side = image_side(evaluators, settings)
    manifest = load_manifest(cfg.data.path, dataset=cfg.data.name)
    split = cfg.evaluate.split or cfg.data.test_split
    if split not in manifest["splits"]:
        raise DataError(f"dataset at {cfg.data.path} has no split {split!r}; it has {sorted(manifest['splits'])}")
    verify_shards(cfg.data.path, manifest, [split], checksums=cfg.data.verify_checksums)
    limit = int(cfg.evaluate.limit or cfg.data.test_limit)
    rows = split_rows(manifest, split, limit)
    if rows == 0:
        raise DataError(f"split {split!r} at {cfg.data.path} is empty")
    channels = int(manifest["image"]["channels"])
    mean, std = normalization(cfg.train.normalize, get_dataset(cfg.data.name), manifest, channels)
    fmt = image_format(manifest, mean, std, side)
    spec = InputSpec(cfg.model.in_channels or channels, settings.crop, cfg.model.num_classes or int(manifest["num_classes"]))
    workers = cfg.scaling.num_workers
    batch_size = int(cfg.evaluate.batch_size or cfg.train.eval_batch_size or max(1, cfg.train.batch_size // workers))
    augment = FULL_IMAGE_AUGMENT if side > settings.crop else "none"
    return EvalPlan(list(evaluators), settings, manifest, fmt, spec, split, limit, rows, augment, batch_size)


def check_model(cfg: DictConfig, spec: InputSpec, state: Optional[Mapping[str, torch.Tensor]], source: str) -> None:
    """Build the model once on the driver: a missing or misfit weights file fails here, in one line."""
    model = build_model(cfg, spec)
    if state is not None:
        load_state(model, state, source)


def run_evaluation(
    cfg: DictConfig,
    names: Optional[Sequence[str]] = None,
    *,
    weights: str = "",
    state: Optional[Mapping[str, torch.Tensor]] = None,
    run_id: str = "",
    step: int = 0,
) -> Dict[str, Any]:
    """Evaluate ``cfg``'s model with the evaluators ``names`` (default ``evaluate.metrics``).

    The model is built as in training (``antialias.weights`` etc.), then
    ``weights`` (a local file) or ``state`` (a state_dict) is loaded over it.
    Metrics go to MLflow run ``run_id`` at ``step``, or to a run named
    ``cfg.run_name`` that this call opens and closes.
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    pin_locations(cfg)
    plan = plan_evaluation(cfg, list(names) if names else list(cfg.evaluate.metrics))
    source = weights or "the trained model"
    if weights:
        state = read_state_dict(weights)
    check_model(cfg, plan.spec, state, source)
    uri = cfg.tracking.uri
    if cfg.tracking.enabled:
        check_reachable(uri)
    ensure_ray(min_cpus=cfg.scaling.num_workers * cfg.scaling.cpus_per_worker + 1)
    use_gpu = wants_gpu(cfg.scaling.use_gpu)
    check_capacity(cfg.scaling.num_workers, cfg.scaling.cpus_per_worker, use_gpu)

    own_run = False
    if cfg.tracking.enabled and not run_id:
        exp_id = runs.experiment_id(uri, cfg.tracking.experiment or cfg.paper or "raysys")
        tags = {"raysys.preset": cfg.preset, "raysys.paper": cfg.paper, "raysys.kind": "eval", "raysys.seed": cfg.seed}
        run_id, resumed = runs.open_run(uri, exp_id, cfg.run_name, tags)
        own_run = True
        if not resumed:
            runs.log_params(uri, run_id, flatten(cfg))
            runs.log_text(uri, run_id, redact(to_yaml(cfg)), "config.yaml")
    with closing_run(uri, run_id if own_run else "", f"evaluation {cfg.run_name!r}"):
        datasets = build_datasets(cfg.data.path, plan.manifest, {"test": (plan.split, plan.limit)}, plan.fmt, cfg.seed)
        loop_config = {
            "config": OmegaConf.to_container(cfg),
            "format": dataclasses.asdict(plan.fmt),
            "input": dataclasses.asdict(plan.spec),
            "settings": dataclasses.asdict(plan.settings),
            "evaluators": plan.names,
            "augment": plan.augment,
            "batch_size": plan.batch_size,
            "state": ray.put(dict(state)) if state is not None else None,
        }
        trainer = TorchTrainer(
            _worker_entry,
            train_loop_config=loop_config,
            scaling_config=worker_scaling(cfg.scaling, use_gpu),
            run_config=ray.train.RunConfig(
                name=f"{cfg.run_name}-eval-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}",
                storage_path=cfg.checkpoint.storage_path,
                failure_config=ray.train.FailureConfig(max_failures=cfg.failure.max_failures),
            ),
            datasets=datasets,
            dataset_config=train_eval_data_config(),
        )
        result = trainer.fit()
        metrics = {k: float(v) for k, v in (result.metrics or {}).items() if k.startswith("eval_")}
        if run_id:
            runs.log_metrics(uri, run_id, metrics, step=step)
            _log_arrays(uri, run_id, result.checkpoint)
        if own_run:
            runs.finish(uri, run_id, "FINISHED")
        return {"run_id": run_id, "run_name": cfg.run_name, "tracking_uri": uri, **metrics}


def _log_arrays(uri: str, run_id: str, checkpoint) -> None:
    if checkpoint is None:
        return
    with checkpoint.as_directory() as directory:
        files = sorted((Path(directory) / ARRAYS_DIR).glob("*.npy"))
        if files:
            runs.log_artifact_files(uri, run_id, files, "diagonal")


def evaluate_after_training(cfg: DictConfig, result, run_id: str) -> Dict[str, Any]:
    """``evaluate.after_training`` on the best checkpoint (``checkpoint.score_attribute``) or the last."""
    from raysys.train import checkpoint as ckpt

    checkpoint = result.checkpoint
    if cfg.checkpoint.score_attribute:
        checkpoint = result.get_best_checkpoint(cfg.checkpoint.score_attribute, cfg.checkpoint.score_order) or checkpoint
    if checkpoint is None:
        raise TrainingError("training left no checkpoint to evaluate (evaluate.after_training)")
    with checkpoint.as_directory() as directory:
        state = ckpt.load_file(Path(directory))["model"]
    step = int((result.metrics or {}).get("epoch", cfg.train.epochs))
    return run_evaluation(cfg, list(cfg.evaluate.after_training), state=state, run_id=run_id, step=step)


# -- on each worker ------------------------------------------------------------------


def _all_reduce(values: List[float], device: torch.device) -> List[float]:
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def _gather(obj: Any) -> List[Any]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def eval_loop_per_worker(loop_config: Dict[str, Any]) -> None:
    """Ray Train entry point: run the evaluators over this worker's share, then report."""
    import ray
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    cfg = from_container(loop_config["config"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
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
    model.eval()
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
    import raysys.catalog  # noqa: F401  (registers models, evaluators, crops)

    eval_loop_per_worker(loop_config)
