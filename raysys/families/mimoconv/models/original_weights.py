"""Weights of the original MIMOConv code (``<identifier>_model.pt``) in and out of raysys models.

The original's checkpoints hold ``model_state_dict`` with the same module names as
:class:`~raysys.families.mimoconv.models.network.SuperWideNet` except for:

| original | raysys |
|---|---|
| ``channelConv.weight`` (N, 1, C), HRR keys | ``binding.keys`` (N, C) |
| ``channelLinear.weight`` (N·C, C, 1, 1), MBAT | ``binding.weight`` (N, C, C) |
| ``unbind.0.weight`` / ``unbind.0.bias`` | ``unbind.weight`` / ``unbind.bias`` |
| ``layerX.Y.reluZ.srelu_bias`` (SReLU) | ``layerX.Y.reluZ.bias`` |

Loading converted original weights gives the original's logits (checked to 3e-7 against
the original code for HRR, MBAT and None models). The original's checkpoint files also hold
a pickled scheduler and optimizer; :func:`read_original_checkpoint` reads their tensors
without running pickled code.
"""
from __future__ import annotations

import codecs
import collections
import pickle
import types
from pathlib import Path
from typing import Dict, List

import torch

from raysys.errors import CheckpointError


def from_original_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The original's ``model_state_dict`` renamed and reshaped for a SuperWideNet."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "channelConv.weight":
            out["binding.keys"] = value.reshape(value.shape[0], -1)
        elif key == "channelLinear.weight":
            channels = value.shape[1]
            out["binding.weight"] = value.reshape(-1, channels, channels)
        elif key.startswith("unbind.0."):
            out["unbind." + key[len("unbind.0."):]] = value
        elif key.endswith(".srelu_bias"):
            out[key[: -len("srelu_bias")] + "bias"] = value
        else:
            out[key] = value
    return out


def to_original_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A SuperWideNet's state dict under the original's names and shapes."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "binding.keys":
            out["channelConv.weight"] = value.unsqueeze(1)
        elif key == "binding.weight":
            n, c, _ = value.shape
            out["channelLinear.weight"] = value.reshape(n * c, c, 1, 1)
        elif key.startswith("unbind."):
            out["unbind.0." + key[len("unbind."):]] = value
        elif key.endswith(".bias") and value.dim() == 4 and ".relu" in key:
            out[key[: -len("bias")] + "srelu_bias"] = value
        else:
            out[key] = value
    return out


class _Inert:
    """Stands in for any object of a checkpoint outside the tensors: built and filled, never run."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __call__(self, *args, **kwargs):
        return _Inert()

    def __setitem__(self, key, value):  # a dict subclass (the optimizer's defaultdict state)
        pass

    def append(self, item):  # a list subclass
        pass

    def extend(self, items):
        pass


# What rebuilding a state dict of tensors needs; storages are resolved by torch.load itself.
_TENSOR_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("_codecs", "encode"): codecs.encode,
}


class _TensorsOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals of tensors; every other class or function becomes :class:`_Inert`.

    The original's checkpoints also pickle its OneCycleLR (PyTorch 1.11 stored the bound
    ``anneal_func``, hence the scheduler and the optimizer), which ``weights_only=True``
    refuses; this reads them without running any of their code.
    """

    def find_class(self, module, name):
        return _TENSOR_GLOBALS.get((module, name), _Inert)


_tensors_only = types.SimpleNamespace(Unpickler=_TensorsOnlyUnpickler, load=pickle.load, __name__="tensors_only")


def read_original_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """The model state dict of ``path``: an original ``<identifier>_model.pt`` (``model_state_dict``),
    a raysys checkpoint (``model``), an exported ``{"state_dict": ...}`` or a bare state dict."""
    if not Path(path).is_file():
        raise CheckpointError(f"MIMOConv checkpoint {path!r} does not exist (give a local file)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickled objects beyond tensors: read the tensors alone
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tensors_only)
        except Exception as err:
            raise CheckpointError(f"cannot read MIMOConv checkpoint {path!r}: {type(err).__name__}: {err}") from None
    state = checkpoint
    if isinstance(checkpoint, dict):
        for key in ("model_state_dict", "model", "state_dict"):
            if isinstance(checkpoint.get(key), dict):
                state = checkpoint[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path!r} holds no model state dict (model_state_dict, model or state_dict)")
    return from_original_state_dict({k.removeprefix("module."): v for k, v in state.items()})


def load_original_weights(model: torch.nn.Module, path: str) -> None:
    """Load a checkpoint file (see :func:`read_original_checkpoint`) into ``model``, strictly."""
    state = read_original_checkpoint(path)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise CheckpointError(f"{path!r} does not fit this model: {first}") from err
    problems = list(result.missing_keys) + list(result.unexpected_keys)
    if problems:
        raise CheckpointError(
            f"{path!r} does not fit this model (check model.name, mimo.width, mimo.initial_width, "
            f"superposition.binding/capacity): mismatched keys {problems[:4]}")


def transfer_matching_weights(model: torch.nn.Module, path: str) -> List[str]:
    """``-t``: copy the checkpoint's tensors whose name and shape match ``model``'s; the rest keep
    their initialisation (train_superposition.py:264-271). Returns the keys left as initialised."""
    own = model.state_dict()
    state = read_original_checkpoint(path)
    matching = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    if not matching:
        raise CheckpointError(f"{path!r} shares no tensor of matching name and shape with this model")
    model.load_state_dict({**own, **matching})
    return sorted(set(own) - set(matching))
