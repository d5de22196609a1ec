"""The FlexConv recipe (``train.recipe=flexconv``), after the original's ``optim.py``/``trainer.py``.

- Parameter groups: FlexConv ``mask_params`` at ``lr * train.mask_params_lr_factor``, a
  learnable SIREN ``omega_0`` at ``lr * train.omega_0_lr_factor``, everything else at ``lr``.
- ``train.weight_decay`` is not the optimizer's weight decay: it weighs the L2 norm (not
  squared) of every continuous kernel the forward generated plus that layer's bias,
  ``wd * sum_layers(||K||_2 + ||b||_2)`` (the original's ``LnLoss``). The optimizer gets 0.
- ``flexconv.kernel.regularize``: the aliasing regularizer (:mod:`raysys.families.flexconv.aliasing`)
  at the resolution of the phase being trained.
- Phases: with ``cross_res`` set, the kernels are sampled on a grid of side ``res + 1``
  per phase, and at the target resolution scaled by ``(source/target)^2`` (the original's
  ``kernel.sampling_rate_norm``, here ``flexconv.kernel.sampling_rate_norm``), so the same continuous kernel covers the same image area.
- Per-epoch statistics: effective kernel sizes, mask sigmas/means, Gabor frequencies.
- Fine-tuning starts from the source phase's best epoch (highest ``test_acc``, ties to the
  lower ``test_loss``, later epoch on a full tie), as the original (its trainer reloads the best
  weights before ``run_crossres.py`` saves the source model); ``cross_res.finetune_from=last``
  keeps the last epoch's. ``source_test_acc`` and ``ootb_diff`` then refer to that epoch
  (``source_best_epoch``).
- State: the default recipe's (early stopping) and the source phase's best weights; the
  phase's resolution is set again by ``on_phase_start`` on resume.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from raysys.errors import ConfigError
from raysys.families.flexconv import aliasing
from raysys.families.flexconv.config import FINETUNE_FROM
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
        section = getattr(cfg, "flexconv", None)
        self.kernel_cfg = section.kernel if section is not None else None
        self.regularize = bool(self.kernel_cfg is not None and self.kernel_cfg.regularize)
        if self.regularize:
            aliasing.validate(self.kernel_cfg.regularize_params)
        self.weight_decay = float(cfg.train.weight_decay)
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay={self.weight_decay} must be >= 0 (the weight of the kernel L2 norm)")
        # The input side of the phase being trained; set by on_phase_start.
        self.resolution = int(cfg.data.resize)
        self.from_best = cross_res_enabled(cfg) and FINETUNE_FROM.get(cfg.cross_res.finetune_from) == "best"
        # The source phase's best epoch so far: {"acc", "loss", "epoch", "state"}; then what fine-tuning started from.
        self.source_best: Optional[Dict[str, Any]] = None
        self.finetune_start: Optional[Dict[str, float]] = None

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
        return aliasing.regularization_res(self.kernel_cfg.regularize_params, self.resolution)

    def loss(self, model: nn.Module, outputs: torch.Tensor, targets: Any) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        loss = F.cross_entropy(outputs, targets)
        extras: Dict[str, torch.Tensor] = {}
        if self.weight_decay > 0:
            l2 = kernel_l2_norm(model)
            extras["kernel_l2"] = l2
            loss = loss + self.weight_decay * l2
        if self.regularize:
            reg = aliasing.aliasing_loss(model, self.kernel_cfg.regularize_params, self.regularization_res())
            extras["gabor_reg"] = reg
            loss = loss + reg
        return loss, extras

    # -- phases ----------------------------------------------------------------------
    def on_phase_start(self, model: nn.Module, phase: Phase, resolution: int) -> None:
        self.resolution = int(resolution)
        if not cross_res_enabled(self.cfg):
            return
        # run_crossres.py: grid side res + 1, kernels scaled by (source/target)^2 after the source phase.
        if phase.name == "finetune" and self.from_best and self.source_best is not None:
            # On resume in the fine-tuning phase no source weights are held yet: the checkpoint's stay.
            model.load_state_dict(self.source_best["state"])
            self.finetune_start = {"acc": self.source_best["acc"], "epoch": self.source_best["epoch"]}
            self.source_best = None
        source = float(self.cfg.cross_res.source_res)
        set_resolution(model, resolution + 1, (source / resolution) ** 2)

    def on_validation_end(self, model: nn.Module, metrics: Dict[str, float]) -> None:
        super().on_validation_end(model, metrics)
        if not self.from_best or metrics.get("phase", 0) != 0:
            return
        acc, loss = float(metrics["test_acc"]), float(metrics.get("test_loss", 0.0))
        best = self.source_best
        if best is None or acc > best["acc"] or (acc == best["acc"] and loss <= best["loss"]):
            self.source_best = {"acc": acc, "loss": loss, "epoch": int(metrics["epoch"]),
                                "state": copy.deepcopy(model.state_dict())}

    def named_metrics(self, metrics: Dict[str, float]) -> Dict[str, float]:
        start = self.finetune_start
        if start is not None and "source_test_acc" in metrics:  # the first fine-tuning epoch
            metrics = {**metrics, "source_test_acc": start["acc"], "source_best_epoch": float(start["epoch"])}
            if "ootb_test_acc" in metrics:
                metrics["ootb_diff"] = metrics["ootb_test_acc"] - start["acc"]
        return super().named_metrics(metrics)

    # -- state -------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "source_best": self.source_best, "finetune_start": self.finetune_start}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.source_best = state.get("source_best")
        self.finetune_start = state.get("finetune_start")

    # -- statistics --------------------------------------------------------------------
    @torch.no_grad()
    def on_train_epoch_end(self, model: nn.Module, epoch: int) -> Dict[str, float]:
        metrics: Dict[str, float] = {}
        layers = continuous_layers(model)
        params = self.kernel_cfg.regularize_params if self.regularize else None
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
