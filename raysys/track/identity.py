"""What makes two MLflow runs the same experiment, and which sweep a run belongs to.

A run is found by its name (preset leaf, seed, hash of the overrides), but a name
survives a change of a preset's defaults. So each run records a fingerprint of the
resolved config it trains: a FINISHED run whose fingerprint differs from the
config's is *stale* (neither skipped by a sweep nor shown in a report); a run
recorded before fingerprints existed is matched by name as before and counted as
*unverified*.

A sweep records membership on each child run it trained or adopted as already
finished: one tag per sweep parent, so a run adopted by two sweeps belongs to both.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, OmegaConf

FINGERPRINT_TAG = "raysys.config_fingerprint"
TRAIN_NAME_TAG = "raysys.train_name"  # Ray Train's run name (its checkpoint folder) for this MLflow run
SUPERSEDED_TAG = "raysys.superseded_by"
MEMBER_TAG_PREFIX = "raysys.member."
SWEEP_KEY_TAG = "raysys.sweep_key"
SWEEP_OVERRIDES_TAG = "raysys.sweep_overrides"
SWEEP_LAST_STARTED_TAG = "raysys.sweep_last_started"

# Where and how a run executes, not what it computes: left out of the fingerprint, so
# the same experiment on another machine, store or worker layout is the same run.
RUNTIME_KEYS = (
    "tracking", "checkpoint.storage_path", "checkpoint.shared", "checkpoint.num_to_keep",
    "data.path", "data.verify_checksums", "scaling.cpus_per_worker", "scaling.torch_threads",
    "scaling.placement_strategy", "failure", "run_name", "preset", "paper",
)

SAME, STALE, UNVERIFIED = "same", "stale", "unverified"


def _without(tree: dict, dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if head not in tree:
        return
    if rest:
        if isinstance(tree[head], dict):
            _without(tree[head], rest)
    else:
        del tree[head]


def fingerprint(cfg: DictConfig | Mapping[str, Any]) -> str:
    """sha256 (16 hex digits) of the resolved config without :data:`RUNTIME_KEYS`."""
    tree = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else json.loads(json.dumps(cfg))
    for key in RUNTIME_KEYS:
        _without(tree, key)
    canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def match(run, expected: str) -> str:
    """:data:`SAME`, :data:`STALE` or :data:`UNVERIFIED` (recorded before fingerprints)."""
    recorded = run.data.tags.get(FINGERPRINT_TAG, "")
    if not recorded:
        return UNVERIFIED
    return SAME if recorded == expected else STALE


def train_name(run_name: str, fp: str) -> str:
    """Ray Train's run name for a new MLflow run: a config change never resumes another config's checkpoint."""
    return f"{run_name}-{fp[:8]}"


def member_tag(parent_run_id: str) -> str:
    return f"{MEMBER_TAG_PREFIX}{parent_run_id}"


def is_member(run, parent_run_id: str) -> bool:
    return member_tag(parent_run_id) in run.data.tags


def sweep_key(space_name: str, overrides: Iterable[str]) -> str:
    """One sweep = one space with one set of overrides; its re-runs share the parent run."""
    items = sorted(str(o) for o in overrides if not str(o).startswith("max_concurrent="))
    if not items:
        return space_name
    digest = hashlib.sha256("\n".join(items).encode()).hexdigest()[:8]
    return f"{space_name}-{digest}"
