"""Model weights as local files: load strictly with ``weights_only=True``, save stripped.

Nothing here downloads: a weights file is a path the user supplied. Accepted
layouts: a bare state_dict, the original antialiased-cnns ``{"state_dict": ...}``
(checkpoints and ``--save_weights`` files) and a raysys checkpoint
(``{"model": ...}``); DDP/DataParallel ``module.`` prefixes are removed.
Every failure is a one-line :class:`~raysys.errors.CheckpointError`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, Union

import torch
from torch import nn

from raysys.errors import CheckpointError
from raysys.train.checkpoint import describe_mismatch, load_failure

PathLike = Union[str, os.PathLike]
_WRAPPER_KEYS = ("state_dict", "model")


def strip_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Remove DDP/DataParallel prefixes: ``module.``, and ``features.module.`` (the
    original wraps only AlexNet's and VGG's ``features`` in DataParallel)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("features.module."):
            key = "features." + key.removeprefix("features.module.")
        out[key] = value
    return out


def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """The model state_dict stored in ``path`` (see the module docstring for layouts)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist (raysys never downloads weights; give a local file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(f"refusing to load weights {path}: {load_failure(exc, 'weights')}") from None
    for key in _WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"weights file {path} holds no state_dict of tensors")
    return strip_state_dict(state)


def load_weights(model: nn.Module, path: PathLike) -> nn.Module:
    """Load ``path`` into ``model`` strictly; a file of another architecture is named as such."""
    return load_state(model, read_state_dict(path), str(path))


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Load a state_dict strictly; every mismatch is summarised in one line naming ``source``."""
    state = strip_state_dict(state)
    own = model.state_dict()
    if set(state) != set(own):
        by_order = _match_by_order(own, state)
        if by_order is not None:
            model.load_state_dict(by_order, strict=True)
            return model
    mismatch = describe_mismatch(own, state)
    if mismatch:
        raise CheckpointError(f"weights {source} do not fit {type(model).__name__}: {mismatch}")
    model.load_state_dict(state, strict=True)
    return model


def _match_by_order(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]):
    """``state`` renamed to ``own``'s keys by position, if every shape agrees; else None.

    The original antialiased-cnns models hold the same tensors as torchvision's in the
    same order under other module names (``conv2.1.weight`` for ``conv2.weight``, shifted
    ``features.<i>``), plus persistent BlurPool filters (``*.filt``), which are dropped.
    This is how its ``copy_params_buffers`` copies weights: by order and shape.
    """
    theirs = [(k, v) for k, v in state.items() if not k.endswith(".filt")]
    if len(theirs) != len(own):
        return None
    if any(tuple(v.shape) != tuple(mine.shape) for (_, v), mine in zip(theirs, own.values())):
        return None
    return {name: value for name, (_, value) in zip(own, theirs)}


def save_weights(state: Mapping[str, torch.Tensor], path: PathLike) -> Path:
    """Write ``{"state_dict": ...}`` without prefixes, atomically (the original's ``--save_weights``)."""
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"state_dict": strip_state_dict(state)}, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
