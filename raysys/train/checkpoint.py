"""Training checkpoints: one dict, written atomically, loaded with ``weights_only=True``.

The dict holds model, optimizer, scheduler and grad-scaler states, the epoch,
the RNG states, the run's Config and its per-epoch metric history. Everything
in it is a tensor or a plain Python value, so ``torch.load(weights_only=True)``
reads it and a pickle that tries to run code is refused.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
from torch import nn

from raysys.errors import CheckpointError
from raysys.models.load_errors import WHY_REFUSED, describe_mismatch, load_failure  # noqa: F401  (re-exported)

STATE_FILE = "state.pt"


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_file(path: Path) -> Dict[str, Any]:
    """Load a checkpoint file safely; every failure is a one-line CheckpointError."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(f"refusing to load checkpoint {path}: {load_failure(exc)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a raysys checkpoint dict")
    return state


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP/DataParallel wrappers."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def load_model_state(model: nn.Module, state_dict: Dict[str, torch.Tensor], source: str) -> None:
    """Load weights strictly; a checkpoint of another architecture gets a clear error."""
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    target = unwrap(model)
    mismatch = describe_mismatch(target.state_dict(), state_dict)
    if mismatch:
        raise CheckpointError(f"checkpoint {source} does not fit model {type(target).__name__}: {mismatch}")
    target.load_state_dict(state_dict)


def rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch RNG states in weights_only-loadable form."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
