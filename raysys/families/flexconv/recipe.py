"""The FlexConv recipe (``train.recipe=flexconv``), after the original's ``optim.py``/``trainer.py``.

- Parameter groups: FlexConv ``mask_params`` at ``lr * train.mask_params_lr_factor``, a
  learnable SIREN ``omega_0`` at ``lr * train.omega_0_lr_factor``, everything else at ``lr``.
- ``train.weight_decay`` is not the optimizer's weight decay: it weighs the L2 norm (not
  squared) of every continuous kernel the forward generated plus that layer's bias,
  ``wd * sum_layers(||K||_2 + ||b||_2)`` (the original's ``LnLoss``). The optimizer gets 0.
- ``kernel.regularize``: the aliasing regularizer (:mod:`raysys.families.flexconv.aliasing`)
  at the resolution of the phase being trained.
- Phases: with ``cross_res`` set, the kernels are sampled on a grid of side ``res + 1``
  per phase, and at the target resolution scaled by ``(source/target)^2`` (the original's
  ``kernel.sampling_rate_norm``), so the same continuous kernel covers the same image area.
- Per-epoch statistics: effective kernel sizes, mask sigmas/means, Gabor frequencies.
- State: none beyond the default recipe's (early stopping); the phase's resolution is set
  again by ``on_phase_start`` on resume.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from raysys.errors import ConfigError
from raysys.families.flexconv import aliasing
from raysys.families.flexconv.layers.ckconv import CKConv, FlexConv
from raysys.families.flexconv.layers.kernels import SineLayer
from raysys.train.phases import Phase, cross_res_enabled
from raysys.train.recipes.base import RECIPES, Recipe


def continuous_layers(model: nn.Module) -> List[CKConv]:
    """CKConv/FlexConv layers in module order (index i is metric suffix ``l{i:02d}``)."""
    return [m for m in model.modules() if isinstance(m, CKConv)]


def mask_parameters(model: nn.Module) -> List[nn.Parameter]:
    return [m.mask_params for m in model.modules() if isinstance(m, FlexConv)]


def omega_0_parameters(model: nn.Module) -> List[nn.Parameter]:
    return [m.omega_0 for m in model.modules()
            if isinstance(m, SineLayer) and isinstance(getattr(m, "omega_0", None), nn.Parameter)]


def kernel_l2_norm(model: nn.Module) -> torch.Tensor:
    """``sum(||K||_2 + ||b||_2)`` over the kernels of the last forward (the original's LnLoss)."""
    total = None
    for layer in continuous_layers(model):
        kernel = layer.last_kernel
        if kernel is None:
            raise RuntimeError("kernel_l2_norm needs a forward pass first (no kernel generated yet)")
        term = kernel.float().norm(2)
        if layer.bias is not None:
            term = term + layer.bias.float().norm(2)
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


def set_resolution(model: nn.Module, grid_side: int, sampling_rate_norm: float) -> None:
    """Sample every continuous kernel on a grid of ``grid_side`` (odd) and scale it by ``sampling_rate_norm``."""
    for layer in continuous_layers(model):
        layer.horizon = int(grid_side)
        layer.train_length.fill_(int(grid_side))
        layer.kernel_sampling_rate_norm = float(sampling_rate_norm)


class FlexConvRecipe(Recipe):
    """Adam with a mask-parameter group, kernel-L2 loss, aliasing regularizer, kernel statistics."""

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        kernel = getattr(cfg, "kernel", None)
        self.regularize = bool(kernel is not None and kernel.regularize)
        if self.regularize:
            aliasing.validate(kernel.regularize_params)
        self.weight_decay = float(cfg.train.weight_decay)
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay={self.weight_decay} must be >= 0 (the weight of the kernel L2 norm)")
        # The input side of the phase being trained; set by on_phase_start.
        self.resolution = int(cfg.data.resize)

    # -- optimisation --------------------------------------------------------------
    def param_groups(self, model: nn.Module) -> List[Dict[str, Any]]:
        masks = {id(p) for p in mask_parameters(model)}
        omegas = {id(p) for p in omega_0_parameters(model)}
        trainable = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trainable if id(p) not in masks | omegas]},
            {"params": [p for p in trainable if id(p) in omegas], "lr_factor": float(self.cfg.train.omega_0_lr_factor)},
            {"params": [p for p in trainable if id(p) in masks], "lr_factor": float(self.cfg.train.mask_params_lr_factor)},
        ]
        return [g for g in groups if g["params"]]

    def optimizer_weight_decay(self) -> float:
        return 0.0

    def regularization_res(self) -> int:
        return aliasing.regularization_res(self.cfg.kernel.regularize_params, self.resolution)

    def loss(self, model: nn.Module, outputs: torch.Tensor, targets: Any) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        loss = F.cross_entropy(outputs, targets)
        extras: Dict[str, torch.Tensor] = {}
        if self.weight_decay > 0:
            l2 = kernel_l2_norm(model)
            extras["kernel_l2"] = l2
            loss = loss + self.weight_decay * l2
        if self.regularize:
            reg = aliasing.aliasing_loss(model, self.cfg.kernel.regularize_params, self.regularization_res())
            extras["gabor_reg"] = reg
            loss = loss + reg
        return loss, extras

    # -- phases ----------------------------------------------------------------------
    def on_phase_start(self, model: nn.Module, phase: Phase, resolution: int) -> None:
        self.resolution = int(resolution)
        if not cross_res_enabled(self.cfg):
            return
        # run_crossres.py: grid side res + 1, kernels scaled by (source/target)^2 after the source phase.
        source = float(self.cfg.cross_res.source_res)
        set_resolution(model, resolution + 1, (source / resolution) ** 2)

    # -- statistics --------------------------------------------------------------------
    @torch.no_grad()
    def on_train_epoch_end(self, model: nn.Module, epoch: int) -> Dict[str, float]:
        metrics: Dict[str, float] = {}
        layers = continuous_layers(model)
        params = self.cfg.kernel.regularize_params if self.regularize else None
        res = self.regularization_res() if self.regularize else 0
        for i, layer in enumerate(layers):
            h, w = layer.kernel_size()
            metrics[f"kernel_size_l{i:02d}"] = float(max(h, w))
            metrics[f"kernel_size_h_l{i:02d}"] = float(h)
            metrics[f"kernel_size_w_l{i:02d}"] = float(w)
            if isinstance(layer, FlexConv):
                (mu_y, sigma_y), (mu_x, sigma_x) = layer.mask_params.detach().float().cpu().tolist()
                metrics.update({
                    f"mask_sigma_y_l{i:02d}": abs(sigma_y), f"mask_sigma_x_l{i:02d}": abs(sigma_x),
                    f"mask_mu_y_l{i:02d}": mu_y, f"mask_mu_x_l{i:02d}": mu_x,
                })
            if params is not None:
                freqs, limits = aliasing.frequencies_and_limits(
                    [layer], res, params.target, params.method, float(params.gauss_stddevs))
                metrics[f"gabor_freq_l{i:02d}"] = float(freqs.max())
                metrics[f"nyquist_l{i:02d}"] = float(limits.max())
        return metrics


RECIPES.add("flexconv", FlexConvRecipe)
