"""Checks a run passes before Ray starts: value ranges, locations, capacity, and the data plan.

The schema checks types; these check what a type cannot say (a worker count
of 0 would otherwise fail inside Ray Train with a ZeroDivisionError and retry).
Every refusal is one line naming the key, the value and what is allowed
(docs/bad-input.md). The driver calls, in this order, before Ray starts:

- :func:`check_values` (cfg) -- ranges, choices, the scheduler's params, the
  tracking URI's scheme, a writable ``checkpoint.storage_path``;
- :func:`check_local_capacity` (cfg) -- right after it, without ``RAY_ADDRESS``:
  the workers fit this machine (the local Ray is sized to the request, so Ray
  Train would otherwise start them all);
- :func:`check_plan` (cfg, plan) -- right after ``plan_data``: the model's
  classes, and a batch for every worker.
"""
from __future__ import annotations

import functools
import math
import numbers
import os
import sys
import tempfile
import urllib.parse
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from raysys.config.loader import _preset_layers
from raysys.config.schema import TrainConfig
from raysys.errors import ConfigError, DataError, one_of
from raysys.track.uri import redact
from raysys.train.optim import check_scheduler_params
from raysys.train.session import resolve_storage_path

# (dotted key, smallest allowed value, what the smallest value means) -- keys a preset may lack are skipped
MINIMUMS = (
    ("scaling.num_workers", 1, ""),
    ("scaling.cpus_per_worker", 1, ""),
    ("scaling.torch_threads", 0, "0 = scaling.cpus_per_worker"),
    ("train.epochs", 1, ""),
    ("train.batch_size", 1, ""),
    ("train.eval_batch_size", 0, "0 = train.batch_size"),
    ("train.accumulate_steps", 1, ""),
    ("train.grad_clip", 0, "0 = no clipping"),
    ("train.weight_decay", 0, ""),
    ("train.early_stopping_patience", 0, "0 = off"),
    ("data.limit", 0, "0 = all rows"),
    ("data.test_limit", 0, "0 = all rows"),
    ("data.holdout", 0, "0 = evaluate on data.test_split"),
    ("data.resize", 0, "0 = keep the size"),
    ("data.shuffle_buffer", 0, "0 = no shuffle"),
    ("data.materialize_limit_gb", 0, "0 = never materialise: stream from the shards every epoch"),
    ("evaluate.limit", 0, "0 = all rows"),
    ("model.num_classes", 0, "0 = from the shards"),
    ("model.in_channels", 0, "0 = from the shards"),
    ("checkpoint.every_epochs", 1, ""),
    ("checkpoint.num_to_keep", 1, ""),
    ("failure.max_failures", -1, "-1 = retry forever"),
)
# Keys that must be a finite number > 0.
POSITIVES = ("train.lr",)
USE_GPU_VALUES = ("auto", "false", "true")
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
SCORE_ORDERS = ("max", "min")

# MLflow 3's tracking stores, by URI scheme (mlflow.tracking._tracking_service.utils registers
# these; "" is a plain path, i.e. the file store). Database URIs may name a driver: postgresql+psycopg2://.
TRACKING_SCHEMES = ("", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "databricks-uc", "uc")
DATABASE_ENGINES = ("postgresql", "mysql", "sqlite", "mssql")
TRACKING_ALLOWED = (
    "empty (a local sqlite file ./mlflow.db), sqlite:///<file>, postgresql://, mysql://, mssql://, "
    "http(s)://<server>, a folder path or file:///<folder>, databricks[://<profile>], databricks-uc, uc"
)
PROBE_PREFIX = ".raysys-write-probe-"


def _get(cfg: DictConfig, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _allowed(minimum, meaning: str) -> str:
    return f"must be >= {minimum}" + (f"; {meaning}" if meaning else "")


def check_values(cfg: DictConfig) -> None:
    """ConfigError naming the first key whose value is out of range, or a location that cannot work."""
    for key, minimum, meaning in MINIMUMS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and value < minimum:
            raise ConfigError(f"bad value for '{key}': {value} ({_allowed(minimum, meaning)})")
    for key in POSITIVES:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not (isinstance(value, numbers.Real) and math.isfinite(value) and value > 0):
            raise ConfigError(f"bad value for '{key}': {value} (must be a number > 0)")
    if cfg.scaling.placement_strategy not in PLACEMENT_STRATEGIES:
        raise ConfigError(f"bad value for 'scaling.placement_strategy': {one_of(cfg.scaling.placement_strategy, PLACEMENT_STRATEGIES)}")
    if str(cfg.scaling.use_gpu).lower() not in (*USE_GPU_VALUES, "1", "0", "yes", "no"):
        raise ConfigError(f"bad value for 'scaling.use_gpu': {cfg.scaling.use_gpu!r} is not one of {list(USE_GPU_VALUES)}")
    if cfg.checkpoint.score_order not in SCORE_ORDERS:
        raise ConfigError(f"bad value for 'checkpoint.score_order': {one_of(cfg.checkpoint.score_order, SCORE_ORDERS)}")
    check_scheduler(cfg)
    if cfg.tracking.enabled:
        check_tracking_uri(cfg.tracking.uri)
    check_storage_writable(cfg.checkpoint.storage_path)


# -- the scheduler's params -------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _preset_scheduler_params_of(preset: str) -> tuple:
    params = dict(TrainConfig().scheduler_params)
    if preset:
        try:
            layers = _preset_layers(preset)
        except ConfigError:  # a Config not made from a shipped preset
            layers = []
        for layer in layers:  # base first, as load_config merges them
            given = (layer.get("train") or {}).get("scheduler_params") if isinstance(layer, dict) else None
            if isinstance(given, dict):
                params.update(given)
    return tuple(params.items())


def _preset_scheduler_params(cfg: DictConfig) -> Dict[str, Any]:
    """train.scheduler_params as the preset chain alone gives them (read from its YAML; the schema's default without one)."""
    return dict(_preset_scheduler_params_of(str(cfg.get("preset") or "")))


def check_scheduler(cfg: DictConfig) -> None:
    """ConfigError for a train.scheduler_params key the chosen scheduler does not read (see optim.check_scheduler_params)."""
    check_scheduler_params(cfg, _preset_scheduler_params(cfg))


# -- locations --------------------------------------------------------------------------------
def _tracking_scheme(uri: str) -> str:
    """The tracking store MLflow would pick for ``uri`` (its get_uri_scheme, without importing MLflow)."""
    if uri in ("databricks", "databricks-uc", "uc"):
        return uri
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    for engine in DATABASE_ENGINES:
        if scheme == engine or scheme.startswith(engine + "+"):
            return engine
    return "" if len(scheme) == 1 else scheme  # a Windows drive letter: a path


def _plugin_schemes() -> tuple:
    """Tracking stores that installed MLflow plugins add (entry point group mlflow.tracking_store)."""
    try:
        return tuple(ep.name for ep in entry_points(group="mlflow.tracking_store"))
    except Exception:  # a broken distribution's metadata: no plugins
        return ()


def check_tracking_uri(uri: str) -> None:
    """ConfigError when MLflow has no tracking store for ``uri``'s scheme (e.g. ftp://)."""
    scheme = _tracking_scheme(str(uri or ""))
    if scheme in TRACKING_SCHEMES or scheme in _plugin_schemes():
        return
    raise ConfigError(
        f"bad value for 'tracking.uri': {redact(str(uri))!r} has the scheme {scheme + '://'!r}, which MLflow cannot "
        f"track to; use {TRACKING_ALLOWED}"
    )


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_storage_writable(configured: str) -> None:
    """ConfigError unless a file can be created at (or above) ``checkpoint.storage_path``.

    A URI (s3://, gs://) is left to its filesystem. For a local path, a probe
    file is created and removed in the folder itself or, when that does not
    exist yet, in its nearest existing ancestor (where Ray Train will create it).
    """
    configured = str(configured or "")
    if configured.startswith("file://"):
        configured = urllib.parse.unquote(urllib.parse.urlparse(configured).path)
    elif "://" in configured:
        return
    path = Path(resolve_storage_path(configured))
    folder = _nearest_existing(path)
    if not folder.is_dir():
        raise ConfigError(
            f"bad value for 'checkpoint.storage_path': {path} cannot be a folder: {folder} is a file; "
            "give a folder (it is created if missing) or a URI (s3://bucket/runs)"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = "it" if folder == path else f"{folder} (its nearest existing folder)"
        raise ConfigError(
            f"bad value for 'checkpoint.storage_path': {path} is not writable: cannot create a file in {where}: "
            f"{exc.strerror or exc}; give a folder you can write, or a URI (s3://bucket/runs)"
        ) from None


# -- capacity ---------------------------------------------------------------------------------
def _ray_running() -> bool:
    """A Ray already initialised in this process (ensure_ray then starts none)."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(getattr(ray, "is_initialized", lambda: False)())


def _cpu_count() -> int:
    """The CPUs ensure_ray counts for a local Ray."""
    return os.cpu_count() or 1


def _local_gpus() -> int:
    try:
        return int(torch.cuda.device_count())
    except Exception:  # no usable CUDA runtime: no GPUs
        return 0


def check_local_capacity(cfg: DictConfig, cpu_count: Optional[int] = None, gpu_count: Optional[int] = None) -> None:
    """ConfigError when the workers cannot fit the local Ray this command would start.

    Only for a local run: with ``RAY_ADDRESS`` set, or a Ray already running in
    this process, it checks nothing (``session.check_capacity`` checks the
    cluster once joined). ``ensure_ray`` gives a local Ray ``os.cpu_count() + 1``
    CPUs, the one extra slot kept for Ray Data's read tasks, and grows it to the
    request; so ``num_workers x cpus_per_worker`` must not exceed the machine's
    CPUs. GPU workers (``use_gpu=true``, or ``auto`` on a machine with GPUs)
    need one GPU each.
    """
    if os.environ.get("RAY_ADDRESS") or _ray_running():
        return
    workers, per_worker = int(cfg.scaling.num_workers), int(cfg.scaling.cpus_per_worker)
    cpus = int(cpu_count if cpu_count is not None else _cpu_count())
    needed = workers * per_worker
    if needed > cpus:
        fix = (
            f"set scaling.num_workers <= {cpus // per_worker}" if cpus >= per_worker
            else f"set scaling.cpus_per_worker <= {cpus}"
        )
        raise ConfigError(
            f"scaling.num_workers={workers} x scaling.cpus_per_worker={per_worker} needs {needed} CPUs; "
            f"this machine has {cpus} (a local Ray keeps one slot more for Ray Data's reads): "
            f"{fix}, or submit to a cluster (RAY_ADDRESS)"
        )
    setting = str(cfg.scaling.use_gpu).lower()
    if setting in ("false", "0", "no"):
        return
    gpus = int(gpu_count if gpu_count is not None else _local_gpus())
    forced = setting in ("true", "1", "yes")
    wanted = workers * float(OmegaConf.select(cfg, "scaling.gpus_per_worker", default=1.0))
    if (forced and wanted > gpus) or (setting == "auto" and 0 < gpus < wanted):
        fix = f"set scaling.num_workers <= {gpus} or scaling.use_gpu=false" if gpus else "set scaling.use_gpu=false"
        raise ConfigError(
            f"scaling.num_workers={workers} with scaling.use_gpu={setting} needs {wanted:g} GPUs; "
            f"this machine has {gpus}: {fix}, or submit to a cluster (RAY_ADDRESS)"
        )


# -- the data plan ----------------------------------------------------------------------------
def check_plan(cfg: DictConfig, plan: Any) -> None:
    """ConfigError when the planned data cannot give every worker something to do, or the model too few classes.

    ``plan`` is the driver's DataPlan (manifest, train_rows, test_rows, ...).
    Ray Train splits the train stream equally (``train_rows // num_workers``
    rows each, the rest dropped) and every worker batches its share with
    ``train.batch_size // num_workers`` rows, keeping a short last batch: a
    worker has at least one batch exactly when its share has a row. The test
    stream is split without dropping, at even row counts: every worker gets a
    row exactly when there are at least as many rows as workers.
    """
    data, workers = cfg.data, int(cfg.scaling.num_workers)
    classes = int(plan.manifest["num_classes"])
    if 0 < cfg.model.num_classes < classes:
        raise ConfigError(
            f"bad value for 'model.num_classes': {cfg.model.num_classes} is fewer than the {classes} classes of the "
            f"shards at {data.path} (labels 0..{classes - 1}); set model.num_classes=0 to take it from the shards, "
            f"or at least {classes}"
        )
    if cfg.train.batch_size < workers:
        raise ConfigError(
            f"bad value for 'train.batch_size': {cfg.train.batch_size} is the global batch, split across "
            f"scaling.num_workers={workers} workers (must be >= {workers}: at least one row per worker)"
        )
    holdout = int(OmegaConf.select(cfg, "data.holdout", default=0) or 0)
    if plan.train_rows // workers < 1:
        raise ConfigError(
            f"the train stream has {plan.train_rows} rows for scaling.num_workers={workers}: each worker needs at least "
            f"one row for a batch; " + _rows_fix("data.limit", data.limit, workers, f"split {data.train_split!r}")
        )
    if plan.test_rows < workers:
        if holdout > 0 and not 0 < data.test_limit < workers:
            fix = f"set data.holdout >= {workers}, or fewer workers"
        else:
            fix = _rows_fix("data.test_limit", data.test_limit, workers, f"split {data.test_split!r}")
        raise ConfigError(
            f"the test stream has {plan.test_rows} rows for scaling.num_workers={workers}: each worker needs at least "
            f"one row to evaluate; {fix}"
        )


def _rows_fix(key: str, limit: int, workers: int, source: str) -> str:
    if 0 < limit < workers:
        return f"set {key} >= {workers} (0 = all rows), or fewer workers"
    return f"{source} has too few rows: set scaling.num_workers lower"


# -- the shards against data.name -------------------------------------------------------------
def check_dataset_matches(cfg: DictConfig, manifest: dict, mean) -> None:
    """DataError when data.name's normalisation does not fit the channels of the shards at data.path."""
    channels = int(manifest["image"]["channels"])
    if len(mean) != channels:
        raise DataError(
            f"shards at {cfg.data.path} hold {channels}-channel images of dataset {manifest.get('dataset')!r}, "
            f"but data.name={cfg.data.name!r} normalises {len(mean)} channels; "
            f"set data.name={manifest.get('dataset')} or point data.path at {cfg.data.name} shards"
        )
