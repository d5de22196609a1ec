"""``raysys train`` and each sweep trial: plan the data, open the run, fit a TorchTrainer, close.

Everything that can be refused is refused before Ray starts: the config, the
shards and their manifest, the tracking server, a run that already FINISHED.
The MLflow run is opened before the workers start and always closed:
FINISHED, or FAILED/KILLED with the reason (:mod:`raysys.driver.record`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from raysys.console import phase, rayout
from raysys.data import holdout
from raysys.data.formats import get_dataset
from raysys.data.jpeg import check_device_available
from raysys.data.normalization import normalization
from raysys.data.shards import load_manifest, verify_shards
from raysys.data.stream import build_datasets, image_format, materialize_limit_bytes, shuffle_buffer_rows
from raysys.driver import launch
from raysys.driver.evaluation import evaluate_after_training
from raysys.driver.record import CHECKPOINT_DIR_TAG, RunRecord, guarded
from raysys.errors import DataError
from raysys.models import InputSpec
from raysys.track import metric_names, runs
from raysys.track.uri import redact
from raysys.train import checkpoint as ckpt
from raysys.train.feed import EpochFeed
from raysys.train.loop import train_loop_per_worker
from raysys.train.phases import total_epochs
from raysys.train.preflight import check_dataset_matches, check_plan
from raysys.train.recipes import build_recipe


@dataclass
class DataPlan:
    """The shards a run reads, checked, and what the model will see."""

    manifest: dict
    fmt: Any
    spec: InputSpec
    train_rows: int
    test_rows: int
    selection: Any = None  # raysys.data.holdout.DataSelection: the split and rows of each stream


def plan_data(cfg: DictConfig) -> DataPlan:
    """Load and verify the manifest and shards; derive the model's input."""
    manifest = load_manifest(cfg.data.path, dataset=cfg.data.name)
    for split in (cfg.data.train_split, cfg.data.test_split):
        if split not in manifest["splits"]:
            raise DataError(f"dataset at {cfg.data.path} has no split {split!r}; it has {sorted(manifest['splits'])}")
    verify_shards(cfg.data.path, manifest, [cfg.data.train_split, cfg.data.test_split], checksums=cfg.data.verify_checksums)
    selection = holdout.select(cfg, manifest)
    selection = build_recipe(cfg).select_data(manifest, selection)  # e.g. STIR scenario filters
    train_rows, test_rows = selection.train_rows, selection.test_rows
    if train_rows == 0 or test_rows == 0:
        raise DataError(f"dataset at {cfg.data.path} has an empty split (train {train_rows}, test {test_rows} rows)")
    channels = int(manifest["image"]["channels"])
    mean, std = normalization(cfg.train.normalize, get_dataset(cfg.data.name), manifest, channels)
    fmt = image_format(manifest, mean, std, cfg.data.resize, jpeg_draft=cfg.data.jpeg_draft, jpeg_device=cfg.data.jpeg_device)
    classes = cfg.model.num_classes or int(manifest["num_classes"])
    spec = InputSpec(cfg.model.in_channels or channels, fmt.output_size, classes)
    return DataPlan(manifest, fmt, spec, train_rows, test_rows, selection)


def already_finished(cfg: DictConfig, run) -> Dict[str, Any]:
    """The summary of a FINISHED run, without training again."""
    metrics = run.data.metrics
    return {
        "run_id": run.info.run_id, "run_name": cfg.run_name, "status": "already finished",
        "test_accuracy": metric_names.value(metrics, "test/acc"), "epochs": metrics.get("epoch"), "checkpoint": "",
        "tracking_uri": redact(cfg.tracking.uri),
    }


def run_training(
    cfg: DictConfig, *, progress: Any = True, parent_run_id: str = "", callbacks: Sequence[Any] = (), rerun: bool = False,
    tags: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Train ``cfg`` on Ray and return the final metrics with run id and tracking URI.

    A run of this config that already FINISHED is not trained again (its summary
    comes back with ``status: already finished``) unless ``rerun``, which makes a
    new run and tags the old one superseded. ``parent_run_id`` makes the MLflow
    run a child (of a sweep); ``callbacks`` are Ray Train user callbacks (a sweep
    passes Tune's report callback); ``tags`` join the run's tags (a sweep's row label).
    """
    import ray.train

    launch.check_before_ray(cfg)
    phase(f"reading the shards at {cfg.data.path}")
    plan = plan_data(cfg)
    check_plan(cfg, plan)
    check_dataset_matches(cfg, plan.manifest, plan.fmt.mean)
    # The recipe's phases (cross_res: source + fine-tune epochs); also checks their config before Ray starts.
    epochs = total_epochs(build_recipe(cfg).phases())
    target = launch.find_target(cfg)
    if target.found is not None and target.found.finished and not rerun:
        return already_finished(cfg, target.found.run)
    use_gpu = launch.start_ray(cfg)
    check_device_available(plan.fmt.jpeg_device, use_gpu)
    device = "cuda" if use_gpu else "cpu"
    if cfg.tracking.enabled:
        phase(f"opening the MLflow run at {redact(cfg.tracking.uri)}")
    record = launch.open_record(cfg, target, kind="train", tags={**launch.run_tags(cfg, device), **(tags or {})},
                                label=f"training run {cfg.run_name!r}", parent_run_id=parent_run_id, rerun=rerun)
    feed: Optional[EpochFeed] = None
    with guarded(record, f"training run {cfg.run_name!r}"):
        run_id = record.run_id if record else ""
        train_name = launch.ray_train_name(cfg, record)
        rayout.attach(f"{cfg.checkpoint.storage_path}/{train_name}")
        if record:
            record_config(record, cfg, f"{cfg.checkpoint.storage_path}/{train_name}")
        try:
            datasets = build_datasets(
                cfg.data.path, plan.manifest, plan.selection.splits, plan.fmt, cfg.seed, row_filters=plan.selection.row_filters,
                row_orders=plan.selection.row_orders, materialize_limit=materialize_limit_bytes(cfg.data),
            )
            feed = EpochFeed(cfg.tracking.uri, run_id, total_epochs=epochs, desc=cfg.run_name, progress=progress) \
                if run_id or progress else None
            shows = feed is not None and feed.wants_progress
            per_worker_rows = plan.train_rows // cfg.scaling.num_workers
            loop_config = {
                "config": launch.worker_config(cfg),
                "format": dataclasses.asdict(plan.fmt),
                "input": dataclasses.asdict(plan.spec),
                "train_rows": plan.train_rows,
                "shuffle_rows": 0 if "train" in plan.selection.row_orders  # a fixed order: read as is
                else shuffle_buffer_rows(plan.fmt, per_worker_rows, cfg.data.shuffle_buffer),
                # Workers never open MLflow: what rank 0 logs comes back through the feed (raysys/train/feed.py).
                "run_id": run_id,
                "feed": feed.queue if feed else None,
                "progress": shows,  # rank 0 sends progress inside epochs and each epoch's summary
            }
            trainer = launch.trainer(
                _worker_entry, loop_config, cfg, name=train_name, use_gpu=use_gpu,
                datasets=datasets, callbacks=callbacks,
                checkpoint_config=ray.train.CheckpointConfig(
                    num_to_keep=cfg.checkpoint.num_to_keep,
                    checkpoint_score_attribute=cfg.checkpoint.score_attribute or None,
                    checkpoint_score_order=cfg.checkpoint.score_order,
                ),
            )
            phase(f"starting {cfg.scaling.num_workers} Ray Train workers ({device}); each builds "
                  f"{cfg.model.name} and streams its share of {plan.train_rows} rows")
            result = feed.follow(trainer.fit) if feed else trainer.fit()
        finally:
            if feed is not None:
                feed.close()
        if OmegaConf.select(cfg, "evaluate.after_training"):
            # Evaluators (e.g. shift consistency) on the best/final model, into this run.
            evaluate_after_training(cfg, result, run_id)
        return _finish(cfg, result, record)


def record_config(record: RunRecord, cfg: DictConfig, checkpoint_dir: str) -> None:
    """A training run's params and ``config.yaml``, and the folder its checkpoints go to (``raysys.checkpoint_dir``)."""
    record.log_config(cfg)
    runs.set_tags(record.uri, record.run_id, {CHECKPOINT_DIR_TAG: checkpoint_dir})


def close_finished(record: RunRecord, cfg: DictConfig, checkpoint_dir: Optional[Path]) -> None:
    """Close a trained run FINISHED, with its final checkpoint's state file as an artifact (``tracking.log_checkpoint``)."""
    if checkpoint_dir is not None and cfg.tracking.log_checkpoint:
        runs.log_artifact_files(record.uri, record.run_id, [Path(checkpoint_dir) / ckpt.STATE_FILE], "checkpoint")
    record.close("FINISHED")


def finished_summary(cfg: DictConfig, run_id: str, metrics: Dict[str, Any], checkpoint: str) -> Dict[str, Any]:
    """What ``raysys train`` prints of a run it trained (its JSON line)."""
    return {
        "run_id": run_id,
        "run_name": cfg.run_name,
        "status": "finished",
        "test_accuracy": metrics.get("test_acc"),
        "epochs": metrics.get("epoch"),
        "checkpoint": checkpoint,
        "tracking_uri": redact(cfg.tracking.uri),
    }


def _finish(cfg: DictConfig, result, record: Optional[RunRecord]) -> Dict[str, Any]:
    metrics = dict(result.metrics or {})
    final_checkpoint = result.checkpoint.path if result.checkpoint is not None else ""
    if record:
        if result.checkpoint is not None:
            with result.checkpoint.as_directory() as directory:
                close_finished(record, cfg, Path(directory))
        else:
            close_finished(record, cfg, None)
    return finished_summary(cfg, record.run_id if record else "", metrics, final_checkpoint)


def _worker_entry(loop_config: Dict[str, Any]) -> None:
    # A fresh worker process: rebuilding the Config (from_container) and every registry lookup
    # discover all families first (raysys/families), so the worker sees every section and name.
    train_loop_per_worker(loop_config)
