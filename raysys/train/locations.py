"""Pin a Config's relative locations to absolute ones, on the process that reads the command line.

Ray workers and Tune trials run in other working directories: a relative
``data.path``, ``checkpoint.storage_path`` or the default sqlite tracking file
must be resolved where the user typed them. These keys are operational, so
pinning them does not change the run's name.

A command started by ``ray job submit --working-dir .`` runs in Ray's copy of that
directory (``.../_ray_pkg_<hash>``), not where the user typed it. There, relative
paths resolve against ``$RAYSYS_SUBMIT_DIR`` when it is set (the submitting
directory, for a cluster that sees the same file system); otherwise a relative input
must exist in the uploaded copy, and a relative output (checkpoints, the sqlite
tracking file) is refused: it would be written into Ray's temporary copy and lost.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from raysys.errors import ConfigError

# Family keys naming local input files (e.g. initial weights), pinned like data.path.
PINNED_FILE_KEYS = ["antialias.weights"]
SUBMIT_DIR_ENV = "RAYSYS_SUBMIT_DIR"
_JOB_PACKAGE = re.compile(r"_ray_pkg_[0-9a-f]+$")
_SQLITE = "sqlite:///"


def job_package_dir(cwd: Optional[Path] = None) -> Optional[Path]:
    """Ray's copy of a job's working directory, when this process runs inside one."""
    here = (cwd or Path.cwd()).resolve()
    return next((p for p in (here, *here.parents) if _JOB_PACKAGE.search(p.name)), None)


def _advice(key: str, value: str, prefix: str, lost: bool) -> str:
    return (f"{key}={prefix}{value} is relative, and this command runs as a Ray job in Ray's copy of the working "
            f"directory ({job_package_dir()}), where it {'would be written and lost' if lost else 'does not exist'}: "
            f"give an absolute path every node can reach ({key}={prefix}$PWD/{value}, expanded by the submitting "
            f"shell), or set {SUBMIT_DIR_ENV} in the job's env_vars to the directory you submit from")


def _base(key: str, value: str, *, output: bool, prefix: str = "") -> Path:
    """The folder a relative ``value`` of ``key`` resolves against; ConfigError where it would be lost."""
    submit_dir = os.environ.get(SUBMIT_DIR_ENV, "")
    if submit_dir:
        return Path(submit_dir).expanduser()
    if job_package_dir() is not None and (output or not (Path.cwd() / value).expanduser().exists()):
        raise ConfigError(_advice(key, value, prefix, lost=output))
    return Path.cwd()


def _absolute(key: str, value: str, *, output: bool, prefix: str = "") -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (_base(key, value, output=output, prefix=prefix) / path).resolve())


def pin_locations(cfg: DictConfig) -> DictConfig:
    """Make data, storage and tracking locations absolute (in place); returns ``cfg``."""
    if "://" not in cfg.data.path:
        cfg.data.path = _absolute("data.path", str(cfg.data.path), output=False)
    storage = str(cfg.checkpoint.storage_path or "runs")
    cfg.checkpoint.storage_path = storage if "://" in storage else _absolute("checkpoint.storage_path", storage, output=True)
    uri = str(cfg.tracking.uri or f"{_SQLITE}mlflow.db")
    if uri.startswith(_SQLITE) and not Path(uri[len(_SQLITE):]).is_absolute():
        uri = _SQLITE + _absolute("tracking.uri", uri[len(_SQLITE):], output=True, prefix=_SQLITE)
    cfg.tracking.uri = uri
    for key in PINNED_FILE_KEYS:
        value = OmegaConf.select(cfg, key, default="")
        if value and "://" not in value:
            OmegaConf.update(cfg, key, _absolute(key, str(value), output=False))
    return cfg
