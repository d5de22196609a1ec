"""What makes two MLflow runs the same experiment, and which sweep a run belongs to.

A run is found by its name (preset leaf, seed, hash of the overrides), but a name
survives a change of a preset's defaults. So each run records a fingerprint of the
resolved config it trains: a FINISHED run whose fingerprint differs from the
config's is *stale* (neither skipped by a sweep nor shown in a report); a run
recorded before fingerprints existed is matched by name as before and counted as
*unverified*.

A run's config holds only the sections of the families it uses (raysys/config/schema.py);
runs recorded before that fingerprinted the full config, every family's sections included.
:func:`fingerprint` gives both (see :class:`Fingerprint`), and :func:`match` accepts either.

A sweep records membership on each child run it trained or adopted as already
finished: one tag per sweep parent, so a run adopted by two sweeps belongs to both.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Iterable, Mapping, Tuple, Union

from omegaconf import DictConfig, OmegaConf

from raysys.config import renames, schema

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
    "data.path", "data.verify_checksums", "data.materialize_limit_gb", "scaling.cpus_per_worker", "scaling.torch_threads",
    "scaling.gpus_per_worker", "scaling.placement_strategy", "failure", "run_name", "preset", "paper",
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


class Fingerprint(str):
    """A config's fingerprint: the string a new run records, plus :attr:`accepted`.

    ``accepted`` holds every fingerprint a recorded run of this same config may carry:
    this one (of the config as it is, pruned to the families it uses) and the one of the
    config with every family's default sections and fields merged back in, which is what
    runs recorded before configs were pruned fingerprinted (their config held every section,
    the unused families' at their defaults). So such a run still matches as SAME as long as
    nothing it uses changed. It also holds the fingerprints of both as recorded before config keys
    were renamed or added (:func:`raysys.config.renames.legacy_tree`). ``str(fp)`` is the plain string.
    """

    accepted: Tuple[str, ...]


def _digest(tree: Dict[str, Any]) -> str:
    tree = json.loads(json.dumps(tree, default=str))
    for key in RUNTIME_KEYS:
        _without(tree, key)
    canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


_DEFAULTS: Dict[int, Dict[str, Any]] = {}


def _every_family_defaults() -> Dict[str, Any]:
    """The default Config with every family's sections and fields (cached per schema version)."""
    version = schema.schema_version()
    if version not in _DEFAULTS:
        _DEFAULTS.clear()
        _DEFAULTS[version] = OmegaConf.to_container(OmegaConf.structured(schema.root_schema()), resolve=True)
    return _DEFAULTS[version]


def with_every_family(tree: Mapping[str, Any]) -> Dict[str, Any]:
    """``tree`` with the sections (and fields of shared sections) it lacks set to their defaults.

    Only whole sections and a section's own fields are added, nothing deeper: a free
    dict such as ``train.scheduler_params`` is never merged into.
    """
    out = dict(tree)
    for name, section in _every_family_defaults().items():
        if name not in out:
            out[name] = section
        elif isinstance(section, dict) and isinstance(out[name], dict):
            out[name] = {**{k: v for k, v in section.items() if k not in out[name]}, **out[name]}
    return out


def fingerprint(cfg: DictConfig | Mapping[str, Any]) -> Fingerprint:
    """sha256 (16 hex digits) of the resolved config without :data:`RUNTIME_KEYS`; see :class:`Fingerprint`."""
    tree = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else json.loads(json.dumps(cfg, default=str))
    fp = Fingerprint(_digest(tree))
    trees = [with_every_family(tree)]
    # Runs recorded before keys were renamed or added (raysys/config/renames.py): under the old names.
    trees += [old for old in (renames.legacy_tree(tree), renames.legacy_tree(trees[0])) if old is not None]
    fp.accepted = tuple(dict.fromkeys([str(fp), *(_digest(t) for t in trees)]))
    return fp


def accepted(expected: Union[str, Iterable[str]]) -> Tuple[str, ...]:
    """The fingerprints a recorded run may carry to be ``expected``'s config (:class:`Fingerprint`)."""
    if isinstance(expected, str):
        return tuple(getattr(expected, "accepted", None) or (expected,))
    return tuple(expected)


def match(run, expected: Union[str, Iterable[str]]) -> str:
    """:data:`SAME`, :data:`STALE` or :data:`UNVERIFIED` (recorded before fingerprints).

    SAME when the recorded fingerprint is one of :func:`accepted`: the pruned config's, or
    (a run recorded before pruning) that of the config with every family's defaults merged back in.
    """
    recorded = run.data.tags.get(FINGERPRINT_TAG, "")
    if not recorded:
        return UNVERIFIED
    return SAME if recorded in accepted(expected) else STALE


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
