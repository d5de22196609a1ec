"""Training checkpoints: one dict, written atomically, loaded with ``weights_only=True``.

The dict holds model, optimizer, scheduler and grad-scaler states, the epoch,
the RNG states, the run's Config and its per-epoch metric history. Everything
in it is a tensor or a plain Python value, so ``torch.load(weights_only=True)``
reads it and a pickle that tries to run code is refused.
"""
from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
from torch import nn

from raysys.errors import CheckpointError

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


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_OPCODE = re.compile(r"Unsupported operand (\d+)")
# Lines of torch's weights_only message that advise loading anyway (weights_only=False,
# add_safe_globals): never passed on; a file that needs them can run code when loaded.
_ADVICE = re.compile(r"weights_only|safe_globals|trusted source|trust the source|file an issue|documentation", re.IGNORECASE)
# Why such a file is refused, by what it should have been.
WHY_REFUSED = {
    "checkpoint": "a raysys checkpoint holds only tensors and plain values: this file was not written by raysys, or was altered",
    "weights": "a weights file must hold only tensors and plain Python values",
}


def load_failure(exc: BaseException, kind: str = "checkpoint") -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line, without torch's advice to load it unsafely.

    Names the Python global the file would have loaded (posix.system, a class), or
    the pickle opcode the weights-only unpickler stopped at; other errors (a
    truncated zip, a missing record) keep their own first line.
    """
    text = str(exc)
    found = _GLOBAL.search(text)
    if found:
        return f"it refers to the Python global {found.group(1)}, which weights-only loading does not allow ({WHY_REFUSED[kind]})"
    opcode = _OPCODE.search(text)
    if opcode:
        return (
            f"it is not a torch.save file that weights-only loading accepts (its pickle stops at opcode {opcode.group(1)}) "
            f"({WHY_REFUSED[kind]})"
        )
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line and not _ADVICE.search(line) and not line.startswith("Weights only load failed")]
    return lines[0] if lines else f"{type(exc).__name__} (weights-only loading refused it)"


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


def describe_mismatch(own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor]) -> str:
    """Missing, unexpected and wrongly shaped keys of ``state`` against ``own``, in one line ("" if it fits)."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    details = []
    if missing:
        details.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if mismatched:
        k = mismatched[0]
        details.append(f"{len(mismatched)} shape mismatches (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
    return "; ".join(details)


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
