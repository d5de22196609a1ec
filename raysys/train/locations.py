"""Pin a Config's relative locations to absolute ones, on the process that reads the command line.

Ray workers and Tune trials run in other working directories: a relative
``data.path``, ``checkpoint.storage_path`` or the default sqlite tracking file
must be resolved where the user typed them. These keys are operational, so
pinning them does not change the run's name.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from raysys.track.uri import resolve_tracking_uri
from raysys.train.session import resolve_storage_path


# Family keys naming local input files (e.g. initial weights), pinned like data.path.
PINNED_FILE_KEYS = ["antialias.weights"]


def pin_locations(cfg: DictConfig) -> DictConfig:
    """Make data, storage and tracking locations absolute (in place); returns ``cfg``."""
    if "://" not in cfg.data.path:
        cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())
    cfg.checkpoint.storage_path = resolve_storage_path(cfg.checkpoint.storage_path)
    cfg.tracking.uri = resolve_tracking_uri(cfg.tracking.uri)
    for key in PINNED_FILE_KEYS:
        value = OmegaConf.select(cfg, key, default="")
        if value and "://" not in value:
            OmegaConf.update(cfg, key, str(Path(value).expanduser().resolve()))
    return cfg
