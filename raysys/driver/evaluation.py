"""``raysys eval``: a Ray Train run whose loop only evaluates (:mod:`raysys.train.evaluate`).

The validation split streams from the Parquet shards through Ray Data (JPEG
decoding and cropping happen in the stream's collate function, as in
training) and is split across the workers without padding or dropping, so
each image is counted once. Metrics and per-image arrays go to MLflow: into
the training run (``evaluate.after_training``, or ``--run-id``) or a run of
its own. A trained model named by an MLflow run id, a run name or a checkpoint
path is evaluated into its run (:func:`evaluate_trained`).

Everything that can be refused is refused before Ray starts: the evaluator
names, the split, the shards, the weights file and its fit to the model.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from omegaconf import DictConfig

from raysys.data.eval_images import FULL_IMAGE_AUGMENT
from raysys.data.formats import get_dataset
from raysys.data.jpeg import check_device_available
from raysys.data.normalization import normalization
from raysys.data.shards import load_manifest, verify_shards
from raysys.data.stream import ImageFormat, build_datasets, image_format, materialize_limit_bytes, split_rows
from raysys.driver import launch
from raysys.driver.checkpoints import read_for_model, resolve
from raysys.driver.record import guarded
from raysys.errors import ConfigError, DataError, TrainingError
from raysys.eval.evaluators import EVALUATORS, EvalSettings, build_evaluators, image_side
from raysys.models import InputSpec, build_model
from raysys.models.weights import load_state
from raysys.track import runs
from raysys.track.uri import redact
from raysys.train import checkpoint as ckpt
from raysys.train.evaluate import ARRAYS_DIR, _worker_entry


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
    fmt = image_format(manifest, mean, std, side, jpeg_draft=cfg.data.jpeg_draft, jpeg_device=cfg.data.jpeg_device)
    spec = InputSpec(cfg.model.in_channels or channels, settings.crop, cfg.model.num_classes or int(manifest["num_classes"]))
    workers = cfg.scaling.num_workers
    batch_size = int(cfg.evaluate.batch_size or cfg.train.eval_batch_size or max(1, cfg.train.batch_size // workers))
    augment = FULL_IMAGE_AUGMENT if side > settings.crop else "none"
    return EvalPlan(list(evaluators), settings, manifest, fmt, spec, split, limit, rows, augment, batch_size)


def check_model(cfg: DictConfig, spec: InputSpec, state: Optional[Mapping[str, torch.Tensor]], source: str,
                weights: str = "") -> Optional[Mapping[str, torch.Tensor]]:
    """Build the model once on the driver: a missing or misfit weights file fails here, in one line.

    ``weights`` (a file) is read by the model family's reader (the original's layout, the checks training's
    loading runs: :func:`raysys.driver.checkpoints.read_for_model`); returns the state the workers load.
    """
    model = build_model(cfg, spec)
    if weights:
        return read_for_model(cfg, model, weights)
    if state is not None:
        load_state(model, state, source)
    return state


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
    ``weights`` (a local file, read as the model's family reads it: docs/weights.md) or
    ``state`` (a state_dict) is loaded over it.
    Metrics go to MLflow run ``run_id`` at ``step``, or to a run named
    ``cfg.run_name`` (kind ``eval``) that this call opens and closes.
    """
    import ray

    launch.check_before_ray(cfg)
    plan = plan_evaluation(cfg, list(names) if names else list(cfg.evaluate.metrics))
    state = check_model(cfg, plan.spec, state, weights or "the trained model", weights)
    own_run = cfg.tracking.enabled and not run_id
    target = launch.find_target(cfg, kind="eval") if own_run else launch.Target(cfg.tracking.uri)
    use_gpu = launch.start_ray(cfg)
    check_device_available(plan.fmt.jpeg_device, use_gpu)
    record = None
    if own_run:
        tags = {"raysys.preset": cfg.preset, "raysys.paper": cfg.paper, "raysys.seed": cfg.seed}
        # A FINISHED evaluation is evaluated again into the same run: what it evaluates
        # (a weights file) is not all in the config, so it cannot be skipped as done.
        record = launch.open_record(cfg, target, kind="eval", tags=tags, label=f"evaluation {cfg.run_name!r}")
        run_id = record.run_id
    with guarded(record, f"evaluation {cfg.run_name!r}"):
        if record:
            record.log_config(cfg)
        datasets = build_datasets(cfg.data.path, plan.manifest, {"test": (plan.split, plan.limit)}, plan.fmt, cfg.seed,
                                  materialize_limit=materialize_limit_bytes(cfg.data))
        loop_config = {
            "config": launch.worker_config(cfg),
            "format": dataclasses.asdict(plan.fmt),
            "input": dataclasses.asdict(plan.spec),
            "settings": dataclasses.asdict(plan.settings),
            "evaluators": plan.names,
            "augment": plan.augment,
            "batch_size": plan.batch_size,
            "state": ray.put(dict(state)) if state is not None else None,
        }
        name = f"{cfg.run_name}-eval-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}"
        result = launch.trainer(_worker_entry, loop_config, cfg, name=name, use_gpu=use_gpu, datasets=datasets).fit()
        metrics = {k: float(v) for k, v in (result.metrics or {}).items() if k.startswith("eval_")}
        if run_id:
            runs.log_metrics(cfg.tracking.uri, run_id, metrics, step=step)
            _log_arrays(cfg.tracking.uri, run_id, result.checkpoint)
        if record:
            record.close("FINISHED")
        return {"run_id": run_id, "run_name": cfg.run_name, "tracking_uri": redact(cfg.tracking.uri), **metrics}


def _log_arrays(uri: str, run_id: str, checkpoint) -> None:
    if checkpoint is None:
        return
    with checkpoint.as_directory() as directory:
        files = sorted((Path(directory) / ARRAYS_DIR).glob("*.npy"))
        if files:
            runs.log_artifact_files(uri, run_id, files, "diagonal")


def evaluate_after_training(cfg: DictConfig, result, run_id: str) -> Dict[str, Any]:
    """``evaluate.after_training`` on the best checkpoint (``checkpoint.score_attribute``) or the last."""
    checkpoint = result.checkpoint
    if cfg.checkpoint.score_attribute:
        checkpoint = result.get_best_checkpoint(cfg.checkpoint.score_attribute, cfg.checkpoint.score_order) or checkpoint
    if checkpoint is None:
        raise TrainingError("training left no checkpoint to evaluate (evaluate.after_training)")
    with checkpoint.as_directory() as directory:
        state = ckpt.load_file(Path(directory))["model"]
    step = int((result.metrics or {}).get("epoch", cfg.train.epochs))
    return run_evaluation(cfg, list(cfg.evaluate.after_training), state=state, run_id=run_id, step=step)


def evaluate_trained(target: str, overrides: Sequence[str], names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Evaluate a trained model (MLflow run id, run name or checkpoint path, :func:`~raysys.driver.checkpoints.resolve`);
    metrics and a JSON (and per-mode CSV) artifact go into its run."""
    trained = resolve(target, overrides)
    cfg = trained.cfg
    if not trained.run_id:
        cfg.tracking.enabled = False  # no run to log into: print only
    chosen = list(names or cfg.evaluate.metrics)
    result = run_evaluation(cfg, chosen, state=trained.state, run_id=trained.run_id, step=trained.epoch)
    result["source"] = trained.source
    if trained.run_id:
        uri = cfg.tracking.uri
        stem = "eval/" + "-".join(chosen)
        runs.log_text(uri, trained.run_id, json.dumps({"overrides": list(overrides), **result}, indent=2), f"{stem}.json")
        tables = [EVALUATORS.get(name).table(result) for name in chosen]
        csv_text = "".join(t for t in tables if t)
        if csv_text:
            runs.log_text(uri, trained.run_id, csv_text, f"{stem}.csv")
    return result
