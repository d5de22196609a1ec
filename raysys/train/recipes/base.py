"""Recipes: the per-family hooks of the generic training loop.

The loop calls these hooks and nothing family-specific. A family overrides
only what it changes: extra loss terms (kernel L2 norm, binding and isometry
regularisers), parameter groups (mask parameters at a lower lr), batch
transforms (mixup, superposition), step gating (skip on huge gradients),
evaluation modes and per-epoch statistics.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from raysys.registry import Registry
from raysys.train.phases import Phase, default_phases

RECIPES: Registry = Registry("recipe", config_key="train.recipe")


class Recipe:
    """The default recipe: cross-entropy, one parameter group, every step taken."""

    def __init__(self, cfg: Any):
        self.cfg = cfg

    def param_groups(self, model: nn.Module) -> List[Dict[str, Any]]:
        """Optimizer groups; a group may carry ``lr_factor`` relative to ``train.lr``."""
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def optimizer_weight_decay(self) -> float:
        return float(self.cfg.train.weight_decay)

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called on every worker before each training epoch."""

    def transform_batch(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, Any]:
        """Train-time batch transform (e.g. mixup); returns inputs and targets."""
        return images, labels

    def loss(self, model: nn.Module, outputs: torch.Tensor, targets: Any) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The loss to minimise and named extra terms to log (as tensors)."""
        return F.cross_entropy(outputs, targets), {}

    def should_step(self, grad_norm: torch.Tensor) -> bool:
        """Whether to apply this step's gradients."""
        return True

    def batch_size_factor(self) -> int:
        """The loader's batch is ``train.batch_size`` times this (MIMOConv: the capacity N)."""
        return 1

    def passes_per_epoch(self) -> int:
        """Passes over the training data per epoch (MIMOConv: N); the schedule counts them."""
        return 1

    def eval_modes(self, model: nn.Module) -> Iterable[str]:
        """Names of the evaluation passes; "" is the plain one (metrics test_*)."""
        return [""]

    def set_eval_mode(self, model: nn.Module, mode: str) -> None:
        """Put the model in evaluation pass ``mode`` (e.g. another superposition)."""

    def epoch_metrics(self, model: nn.Module) -> Dict[str, float]:
        """Statistics logged once per epoch (e.g. learned kernel sizes)."""
        return {}

    def phases(self) -> List[Phase]:
        """The run's phases: one, or the two of ``cross_res`` (see raysys/train/phases.py)."""
        return default_phases(self.cfg)

    def on_phase_start(self, model: nn.Module, phase: Phase, resolution: int) -> None:
        """Adapt the model to ``phase`` (input side ``resolution``); also called on resume."""

    def select_data(self, manifest: dict, selection: Any) -> Any:
        """The streams to read (a ``raysys.data.holdout.DataSelection``); may filter rows or add
        streams, e.g. a "final" stream that :meth:`final_metrics` evaluates (STIR scenarios)."""
        return selection

    def named_metrics(self, metrics: Dict[str, float]) -> Dict[str, float]:
        """An epoch's metrics as logged (STIR: the original's names and units)."""
        return metrics

    def final_metrics(self, runner: Any, history: List[Dict[str, float]]) -> Dict[str, float]:
        """Metrics after the last epoch (best weights reloaded under early stopping), on every worker;
        ``runner`` is the loop's EpochRunner. Rank 0 sends them to the driver, which logs them to MLflow."""
        return {}


RECIPES.add("default", Recipe)


def build_recipe(cfg: Any) -> Recipe:
    return RECIPES.get(cfg.train.recipe)(cfg)
