"""Why a state file does not load, in one line: torch's weights-only refusal, a state_dict that misfits its model.

Shared by training checkpoints (:mod:`raysys.train.checkpoint`) and weights files
(:mod:`raysys.models.weights`); pure functions of the exception or the two state_dicts.
"""
from __future__ import annotations

import re
from typing import Dict

import torch

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
