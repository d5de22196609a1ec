"""Checks a run passes before Ray starts: value ranges, and shards that fit ``data.name``.

The schema checks types; these check what a type cannot say (a worker count
of 0 would otherwise fail inside Ray Train with a ZeroDivisionError and retry).
"""
from __future__ import annotations

from omegaconf import DictConfig

from raysys.errors import ConfigError, DataError, one_of

# (dotted key, smallest allowed value)
MINIMUMS = (
    ("scaling.num_workers", 1),
    ("scaling.cpus_per_worker", 1),
    ("train.epochs", 1),
    ("train.batch_size", 1),
    ("checkpoint.every_epochs", 1),
    ("checkpoint.num_to_keep", 1),
    ("failure.max_failures", -1),
)
USE_GPU_VALUES = ("auto", "false", "true")
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def _get(cfg: DictConfig, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def check_values(cfg: DictConfig) -> None:
    """ConfigError naming the first key whose value is out of range."""
    for key, minimum in MINIMUMS:
        value = _get(cfg, key)
        if value < minimum:
            raise ConfigError(f"bad value for '{key}': {value} (must be >= {minimum})")
    if cfg.scaling.placement_strategy not in PLACEMENT_STRATEGIES:
        raise ConfigError(f"bad value for 'scaling.placement_strategy': {one_of(cfg.scaling.placement_strategy, PLACEMENT_STRATEGIES)}")
    if str(cfg.scaling.use_gpu).lower() not in (*USE_GPU_VALUES, "1", "0", "yes", "no"):
        raise ConfigError(f"bad value for 'scaling.use_gpu': {cfg.scaling.use_gpu!r} is not one of {list(USE_GPU_VALUES)}")


def check_dataset_matches(cfg: DictConfig, manifest: dict, mean) -> None:
    """DataError when data.name's normalisation does not fit the channels of the shards at data.path."""
    channels = int(manifest["image"]["channels"])
    if len(mean) != channels:
        raise DataError(
            f"shards at {cfg.data.path} hold {channels}-channel images of dataset {manifest.get('dataset')!r}, "
            f"but data.name={cfg.data.name!r} normalises {len(mean)} channels; "
            f"set data.name={manifest.get('dataset')} or point data.path at {cfg.data.name} shards"
        )
