"""Driving one training run: validate, open the MLflow run, fit a TorchTrainer, close.

Everything that can be refused is refused before Ray starts: the config, the
shards and their manifest, the tracking server. The MLflow run is opened before
the workers start and always closed: FINISHED, or FAILED/KILLED with the reason.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf

import raysys
from raysys.config.loader import flatten, to_yaml
from raysys.data import holdout
from raysys.data.formats import get_dataset
from raysys.data.normalization import normalization
from raysys.data.shards import load_manifest, verify_shards
from raysys.data.stream import build_datasets, image_format, shuffle_buffer_rows, train_eval_data_config
from raysys.errors import DataError, RaysysError, TrainingError
from raysys.models import InputSpec
from raysys.track import runs
from raysys.track.uri import check_reachable, redact
from raysys.train import checkpoint as ckpt
from raysys.train.feed import EpochFeed
from raysys.train.phases import total_epochs
from raysys.train.recipes import build_recipe
from raysys.train.locations import pin_locations
from raysys.train.preflight import check_dataset_matches, check_values
from raysys.train.session import check_capacity, ensure_ray, wants_gpu, worker_scaling
from raysys.train.storage import check_shared_storage


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
    fmt = image_format(manifest, mean, std, cfg.data.resize)
    classes = cfg.model.num_classes or int(manifest["num_classes"])
    spec = InputSpec(cfg.model.in_channels or channels, fmt.output_size, classes)
    return DataPlan(manifest, fmt, spec, train_rows, test_rows, selection)


def run_tags(cfg: DictConfig, world_size: int, device: str) -> Dict[str, Any]:
    return {
        "raysys.preset": cfg.preset,
        "raysys.paper": cfg.paper,
        "raysys.seed": cfg.seed,
        "raysys.version": raysys.__version__,
        "raysys.world_size": world_size,
        "raysys.device": device,
        "mlflow.source.git.commit": runs.git_commit(Path(__file__).parent),
    }


def _root_cause(exc: BaseException) -> str:
    """The innermost worker error of a Ray Train failure, as one line."""
    seen = exc
    for attr in ("worker_failures", "controller_failure"):
        failures = getattr(exc, attr, None)
        if isinstance(failures, dict) and failures:
            seen = next(iter(failures.values()))
        elif isinstance(failures, BaseException):
            seen = failures
    while getattr(seen, "cause", None) is not None and seen.cause is not seen:
        seen = seen.cause
    text = str(seen).strip()
    if isinstance(seen, RaysysError) and text:  # our own one-line message, re-raised by Ray
        return text.splitlines()[0]
    for marker in ("TrainingError:", "FloatingPointError:", "DataError:", "CheckpointError:"):
        if marker in text:
            return text.rsplit(marker, 1)[1].strip().splitlines()[0]
    lines = [line for line in text.splitlines() if line.strip()]
    return f"{type(seen).__name__}: {lines[-1] if lines else ''}".strip()


def run_training(
    cfg: DictConfig, *, progress: bool = True, parent_run_id: str = "", callbacks: Sequence[Any] = (),
) -> Dict[str, Any]:
    """Train ``cfg`` on Ray and return the final metrics with run id and tracking URI.

    ``parent_run_id`` makes the MLflow run a child (of a sweep); ``callbacks`` are
    Ray Train user callbacks (a sweep passes Tune's report callback).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    pin_locations(cfg)
    check_values(cfg)
    plan = plan_data(cfg)
    check_dataset_matches(cfg, plan.manifest, plan.fmt.mean)
    uri = cfg.tracking.uri
    if cfg.tracking.enabled:
        check_reachable(uri)
    storage_path = cfg.checkpoint.storage_path
    ensure_ray(min_cpus=cfg.scaling.num_workers * cfg.scaling.cpus_per_worker + 1)
    use_gpu = wants_gpu(cfg.scaling.use_gpu)
    check_capacity(cfg.scaling.num_workers, cfg.scaling.cpus_per_worker, use_gpu)
    check_shared_storage(storage_path, uri if cfg.tracking.enabled else "", cfg.checkpoint.shared)
    device = "cuda" if use_gpu else "cpu"

    run_id = ""
    if cfg.tracking.enabled:
        exp_id = runs.experiment_id(uri, cfg.tracking.experiment or cfg.paper or "raysys")
        run_id, resumed = runs.open_run(uri, exp_id, cfg.run_name, run_tags(cfg, cfg.scaling.num_workers, device), parent_run_id)
        if not resumed:
            runs.log_params(uri, run_id, flatten(cfg))
            runs.log_text(uri, run_id, redact(to_yaml(cfg)), "config.yaml")
    feed = None
    try:
        with closing_run(uri, run_id, f"training run {cfg.run_name!r}"):
            datasets = build_datasets(
                cfg.data.path, plan.manifest,
                plan.selection.splits, plan.fmt, cfg.seed, row_filters=plan.selection.row_filters,
            )
            # The recipe's phases (cross_res: source + fine-tune epochs); also checks their config before Ray starts work.
            epochs = total_epochs(build_recipe(cfg).phases())
            feed = EpochFeed(uri, run_id, total_epochs=epochs, desc=cfg.run_name, progress=progress) if run_id or progress else None
            per_worker_rows = plan.train_rows // cfg.scaling.num_workers
            loop_config = {
                "config": OmegaConf.to_container(cfg),
                "format": dataclasses.asdict(plan.fmt),
                "input": dataclasses.asdict(plan.spec),
                "train_rows": plan.train_rows,
                "shuffle_rows": shuffle_buffer_rows(plan.fmt, per_worker_rows, cfg.data.shuffle_buffer),
                "tracking_uri": uri if cfg.tracking.enabled else "",
                "run_id": run_id,
                "feed": feed.queue if feed else None,
            }
            trainer = TorchTrainer(
                _worker_entry,
                train_loop_config=loop_config,
                scaling_config=worker_scaling(cfg.scaling, use_gpu),
                run_config=ray.train.RunConfig(
                    name=cfg.run_name, storage_path=storage_path,
                    failure_config=ray.train.FailureConfig(max_failures=cfg.failure.max_failures),
                    checkpoint_config=ray.train.CheckpointConfig(
                        num_to_keep=cfg.checkpoint.num_to_keep,
                        checkpoint_score_attribute=cfg.checkpoint.score_attribute or None,
                        checkpoint_score_order=cfg.checkpoint.score_order,
                    ),
                    callbacks=list(callbacks) or None,
                ),
                datasets=datasets,
                dataset_config=train_eval_data_config(),
            )
            result = feed.follow(trainer.fit) if feed else trainer.fit()
            if OmegaConf.select(cfg, "evaluate.after_training"):
                # Evaluators (e.g. shift consistency) on the best/final model, into this run.
                from raysys.train.evaluate import evaluate_after_training

                evaluate_after_training(cfg, result, run_id)
            return _finish(cfg, result, uri, run_id)
    finally:
        if feed is not None:
            feed.close()


@contextmanager
def closing_run(uri: str, run_id: str, label: str) -> Iterator[None]:
    """On an error in the block, end MLflow run ``run_id`` (if any) as KILLED or FAILED with the reason.

    Errors other than ours become a one-line :class:`TrainingError` "<label> failed: <root cause>".
    """
    try:
        yield
    except KeyboardInterrupt:
        if run_id:
            runs.finish(uri, run_id, "KILLED", "interrupted by the user")
        raise
    except RaysysError as exc:
        if run_id:
            runs.finish(uri, run_id, "FAILED", str(exc))
        raise
    except Exception as exc:
        reason = _root_cause(exc)
        if run_id:
            runs.finish(uri, run_id, "FAILED", reason)
        raise TrainingError(f"{label} failed: {reason}") from exc


def _finish(cfg: DictConfig, result, uri: str, run_id: str) -> Dict[str, Any]:
    metrics = dict(result.metrics or {})
    final_checkpoint = ""
    if result.checkpoint is not None:
        final_checkpoint = result.checkpoint.path
        if run_id and cfg.tracking.log_checkpoint:
            with result.checkpoint.as_directory() as directory:
                runs.log_artifact_files(uri, run_id, [Path(directory) / ckpt.STATE_FILE], "checkpoint")
    if run_id:
        runs.finish(uri, run_id, "FINISHED")
    summary = {
        "run_id": run_id,
        "run_name": cfg.run_name,
        "test_accuracy": metrics.get("test_acc"),
        "epochs": metrics.get("epoch"),
        "checkpoint": final_checkpoint,
        "tracking_uri": uri,
    }
    return summary


def _worker_entry(loop_config: Dict[str, Any]) -> None:
    # A fresh worker process: register every config section and model first.
    import raysys.catalog  # noqa: F401
    from raysys.train.loop import train_loop_per_worker

    train_loop_per_worker(loop_config)
