"""MIMOConv weights in and out of the layout of IBM/multiple-input-multiple-output-nets.

The key and shape conversions are :mod:`raysys.families.mimoconv.models.original_weights`'s.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from torch import nn

from raysys.families.mimoconv.models.original_weights import read_original_checkpoint, to_original_state_dict
from raysys.models.weights import register_original_format, register_weights_reader


@register_original_format("mimoconv")
def export_original(model: nn.Module, name: str) -> Dict[str, Any]:
    """``{"model_state_dict": ...}`` under the original's names and shapes: what ``validate_dynamic.py
    --checkpoint FILE`` reads (``model.load_state_dict(checkpoint['model_state_dict'])``, strict) and
    ``train_superposition.py -t FILE`` transfers from. The optimizer and scheduler states of its
    ``<identifier>_model.pt`` are left out: nothing reads them but its own resume."""
    return {"model_state_dict": to_original_state_dict(model.state_dict())}


@register_weights_reader("mimoconv")
def read_mimo_weights(model: nn.Module, source: str, name: str) -> Dict[str, torch.Tensor]:
    """``eval --weights``: an original ``<identifier>_model.pt`` (its pickled scheduler is not run), an
    export of either format, or a raysys checkpoint, as a SuperWideNet state_dict (the ``mimo.weights`` reader)."""
    return read_original_checkpoint(source)
