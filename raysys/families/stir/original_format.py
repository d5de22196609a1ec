"""STIR weights in the layout of taltstidl/scale-equivariant-cnn.

raysys's models have the original's module names, so the keys are the same, except for the
SESN bases: the original saves each convolution's basis (``conv<i>.basis.basis``, a buffer);
raysys rebuilds it from the config and leaves it out of its checkpoints
(:class:`~raysys.families.stir.layers.sesn.SteerableBasis`). The export puts them back.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from torch import nn

from raysys.families.stir.layers.sesn import SteerableBasis
from raysys.models.weights import register_original_format


@register_original_format("stir")
def export_original(model: nn.Module, name: str) -> Dict[str, Any]:
    """A bare state_dict, with the Hermite/DISCO bases: what the original's ``scripts/train.py`` saves
    (``torch.save(net.state_dict(), 'model.pt')``) and ``scripts/eval.py`` loads strictly
    (``model.load_state_dict(torch.load(state_path))``)."""
    return original_state_dict(model)


def original_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """``model.state_dict()`` with every SteerableBasis's ``basis``, in the original's order (after its layer's own tensors)."""
    out: Dict[str, torch.Tensor] = {}
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        out.update({dot + k: p.detach() for k, p in module._parameters.items() if p is not None})
        out.update({dot + k: b for k, b in module._buffers.items()
                    if b is not None and (k not in module._non_persistent_buffers_set or isinstance(module, SteerableBasis))})
    return out
