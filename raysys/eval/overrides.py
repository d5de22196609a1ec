"""Which config keys ``raysys eval <trained run>`` may change: a plain list, no config loading.

An evaluation of a trained model takes the architecture from the checkpoint; overrides may
change only how and on what it is evaluated. Families add their keys at import with
:func:`allow_eval_override` (MIMO's ``superposition.sup_low``); the driver applies the
overrides (:func:`raysys.driver.checkpoints.apply_eval_overrides`).
"""
from __future__ import annotations

from typing import List

# Keys (or prefixes ending in ".") an evaluation may set freely.
_EVAL_KEYS: List[str] = [
    "evaluate.", "scaling.", "tracking.", "checkpoint.", "failure.", "seed", "deterministic",
    "data.path", "data.test_split", "data.test_limit", "data.verify_checksums",
    "train.eval_batch_size", "train.amp", "train.channels_last",
]


def allow_eval_override(key: str) -> None:
    """Let ``raysys eval <trained run>`` change ``key`` (a dotted key, or a prefix ending in ".")."""
    if key not in _EVAL_KEYS:
        _EVAL_KEYS.append(key)


def eval_override_allowed(key: str) -> bool:
    """Whether an evaluation may set ``key`` to a value other than the trained one."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in _EVAL_KEYS)


def eval_override_keys() -> List[str]:
    """The keys and prefixes an evaluation may change, in the order they were allowed."""
    return list(_EVAL_KEYS)
