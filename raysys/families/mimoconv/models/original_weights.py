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
the original code for HRR, MBAT and None models).
"""
from __future__ import annotations

from typing import Dict

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


def load_original_weights(model: torch.nn.Module, path: str) -> None:
    """Load an original checkpoint file (or bare state dict) into ``model``, strictly."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise CheckpointError(f"cannot read original MIMOConv checkpoint {path!r}: {err}") from err
    except Exception as err:  # pickled objects beyond tensors (e.g. an old OneCycleLR state)
        raise CheckpointError(
            f"{path!r} is not loadable with weights_only=True ({type(err).__name__}); if you trust it, save its "
            f"weights alone: torch.save(torch.load(p, weights_only=False)['model_state_dict'], out)") from err
    state = checkpoint.get("model_state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path!r} holds no model_state_dict")
    try:
        result = model.load_state_dict(from_original_state_dict(state), strict=False)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise CheckpointError(f"{path!r} does not fit this model: {first}") from err
    problems = list(result.missing_keys) + list(result.unexpected_keys)
    if problems:
        raise CheckpointError(
            f"{path!r} does not fit this model (check model.name, mimo.width, mimo.initial_width, "
            f"superposition.binding/capacity): mismatched keys {problems[:4]}")
