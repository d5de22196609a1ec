"""FlexNet weights in the layout of rjbruin/flexconv.

raysys's FlexNet has the original's module names (``cconv1``, ``blocks.<i>.cconv1``, ...,
``out_layer``), so the keys are the same; only the file around them is the original's.
"""
from __future__ import annotations

from typing import Any, Dict

from torch import nn

from raysys.errors import CheckpointError
from raysys.families.flexconv.layers.srf import SRFConv2d
from raysys.models.weights import register_original_format


@register_original_format("flexconv")
def export_original(model: nn.Module, name: str) -> Dict[str, Any]:
    """``{"model": state_dict}``: what the original's ``trainer.save_to_wandb`` writes and ``run_experiment.py``
    reads with ``pretrained=True pretrained_params.filepath=FILE`` (``torch.load(FILE)["model"]``, loaded with
    ``pretrained_strict=True``, its default). ``flexconv.conv.type=SRF`` is refused: the original's N-Jet layer
    comes from the external ``srf`` package, whose keys raysys has not recorded."""
    if any(isinstance(module, SRFConv2d) for module in model.modules()):
        raise CheckpointError(f"--format original: {name} with flexconv.conv.type=SRF has no recorded original layout "
                              "(allowed: conv.type FlexConv, CKConv or Conv)")
    return {"model": model.state_dict()}
