"""The steps every driver shares: checks before Ray, Ray with capacity, the MLflow run, the TorchTrainer.

``raysys train``, ``raysys eval`` and each sweep trial go through :func:`check_before_ray`,
:func:`find_target`, :func:`start_ray`, :func:`open_record` and :func:`trainer`; nothing
else starts Ray, opens a run or builds a TorchTrainer.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

import raysys
from raysys.config.loader import paper_titles
from raysys.console import phase, rayout
from raysys.errors import ConfigError
from raysys.driver import record as rec
from raysys.track import identity, runs
from raysys.track.uri import check_reachable, redact
from raysys.train import preflight
from raysys.train.locations import pin_locations
from raysys.train.devices import check_gpu_share, torch_config
from raysys.train.session import check_capacity, ensure_ray, wants_gpu, worker_scaling
from raysys.train.storage import check_shared_storage


@dataclass
class Target:
    """Where a run's record goes: the tracking URI, the experiment, what the store holds for this config."""

    uri: str
    exp_id: str = ""
    found: Optional[rec.Lookup] = None


def check_before_ray(cfg: DictConfig) -> None:
    """The value checks that need neither data nor Ray."""
    pin_locations(cfg)
    preflight.check_values(cfg)
    check_gpu_share(cfg.scaling.num_workers, cfg.scaling.gpus_per_worker)
    preflight.check_local_capacity(cfg)  # a local Ray only: a cluster is checked once joined


def check_packable(cfgs: Sequence[DictConfig]) -> None:
    """ConfigError, in one line, for a run that a pack of seeds (a sweep's ``seeds_per_trial`` > 1) cannot train."""
    for cfg in cfgs:
        where = f"seeds_per_trial > 1, run {cfg.run_name}"
        if not cfg.tracking.enabled:
            raise ConfigError(f"{where}: needs tracking.enabled=true (the driver opens each seed's run)")
        if OmegaConf.select(cfg, "evaluate.after_training"):
            raise ConfigError(f"{where}: evaluate.after_training is not run inside a pack; use seeds_per_trial=1")
        if "://" in str(cfg.checkpoint.storage_path):
            raise ConfigError(f"{where}: checkpoint.storage_path={cfg.checkpoint.storage_path} is a URI; a pack keeps "
                              "each seed's checkpoints in a local or shared folder; use seeds_per_trial=1")


def find_target(cfg: DictConfig, kind: str = "train") -> Target:
    """Reach the tracking server and look up this config's run (no Ray yet)."""
    uri = cfg.tracking.uri
    if not cfg.tracking.enabled:
        return Target(uri)
    check_reachable(uri)
    exp_id = runs.experiment_id(uri, cfg.tracking.experiment or cfg.paper or "raysys", experiment_description(cfg.paper))
    return Target(uri, exp_id, rec.lookup(uri, exp_id, cfg, kind))


def experiment_description(paper: str) -> str:
    """What the MLflow UI says of a paper's experiment: the paper's title and where its presets are."""
    title = paper_titles().get(paper, "")
    return f"{title}. raysys runs of the `{paper}` presets (`raysys presets`)." if title else ""


def start_ray(cfg: DictConfig) -> bool:
    """Start or join Ray sized for the run; refuse what it cannot hold. Returns whether workers use GPUs."""
    import ray

    address = os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        phase(f"joining the Ray cluster at {address}" if address else "starting a local Ray (a few seconds)")
    ensure_ray(min_cpus=cfg.scaling.num_workers * cfg.scaling.cpus_per_worker + 1)
    rayout.take_over()  # also for a Ray this process joined earlier (idempotent)
    use_gpu = wants_gpu(cfg.scaling.use_gpu)
    check_capacity(cfg.scaling.num_workers, cfg.scaling.cpus_per_worker, use_gpu, cfg.scaling.gpus_per_worker)
    check_shared_storage(cfg.checkpoint.storage_path, cfg.tracking.uri if cfg.tracking.enabled else "", cfg.checkpoint.shared)
    return use_gpu


def run_tags(cfg: DictConfig, device: str) -> Dict[str, Any]:
    return {
        "raysys.preset": cfg.preset,
        "raysys.paper": cfg.paper,
        "raysys.seed": cfg.seed,
        "raysys.version": raysys.__version__,
        "raysys.world_size": cfg.scaling.num_workers,
        "raysys.device": device,
        "mlflow.source.git.commit": runs.git_commit(Path(__file__).parent),
        "mlflow.source.name": f"raysys {cfg.preset}",  # the runs table's Source column
        "mlflow.source.type": "LOCAL",
    }


def open_record(
    cfg: DictConfig, target: Target, *, kind: str, tags: Dict[str, Any], label: str,
    parent_run_id: str = "", rerun: bool = False,
) -> Optional[rec.RunRecord]:
    """Open (or resume) the MLflow run; its params and config.yaml are logged inside its guard."""
    if not cfg.tracking.enabled:
        return None
    return rec.RunRecord.open(cfg, target.exp_id, target.found or rec.Lookup(None), kind=kind, tags=tags,
                              label=label, parent_run_id=parent_run_id, rerun=rerun)


def ray_train_name(cfg: DictConfig, record: Optional[rec.RunRecord]) -> str:
    """Ray Train's run name (its checkpoint folder): the MLflow run's, so a resume finds its checkpoint."""
    return record.train_name if record else identity.train_name(cfg.run_name, identity.fingerprint(cfg))


def worker_config(cfg: DictConfig) -> Dict[str, Any]:
    """The config sent to workers and saved in checkpoints: no credentials in ``tracking.uri``."""
    container = OmegaConf.to_container(cfg)
    container["tracking"]["uri"] = redact(container["tracking"]["uri"])
    return container


def trainer(
    entry: Callable[[Dict[str, Any]], None], loop_config: Dict[str, Any], cfg: DictConfig, *, name: str, use_gpu: bool,
    datasets: Dict[str, Any], callbacks: Sequence[Any] = (), checkpoint_config: Any = None, dataset_config: Any = None,
):
    """A TorchTrainer for ``entry`` with the run's scaling, storage and failure settings.

    ``dataset_config``: how the datasets split across workers (default: ``train`` equally, the rest exactly).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    from raysys.data.stream import train_eval_data_config

    return TorchTrainer(
        entry,
        train_loop_config=loop_config,
        scaling_config=worker_scaling(cfg.scaling, use_gpu),
        torch_config=torch_config(),  # nccl where the workers have CUDA, gloo where their GPUs are only logical
        run_config=ray.train.RunConfig(
            name=name, storage_path=cfg.checkpoint.storage_path,
            failure_config=ray.train.FailureConfig(max_failures=cfg.failure.max_failures),
            checkpoint_config=checkpoint_config,
            callbacks=list(callbacks) or None,
        ),
        datasets=datasets,
        dataset_config=dataset_config if dataset_config is not None else train_eval_data_config(),
    )
