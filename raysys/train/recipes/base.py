"""Recipes: the per-family hooks of the generic training loop.

The loop calls these hooks and nothing family-specific. A family overrides
only what it changes: extra loss terms (kernel L2 norm, binding and isometry
regularisers), parameter groups (mask parameters at a lower lr), batch
transforms (mixup, superposition), step gating (skip on huge gradients),
evaluation modes, per-epoch statistics and a final test.

Hooks named ``on_*`` are called at that moment of the loop (the names follow
Lightning's ``Callback``); the others are asked for a setting or a value. A
recipe's state -- whatever a hook keeps from one epoch to the next -- is
:meth:`Recipe.state_dict`, saved in every checkpoint and loaded back on resume.
See :mod:`raysys.train.recipes` for the order of the moments.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from raysys.errors import TrainingError
from raysys.registry import Registry
from raysys.train.early_stopping import EarlyStopping
from raysys.train.phases import Phase, default_phases

RECIPES: Registry = Registry("recipe", config_key="train.recipe")


class Recipe:
    """The default recipe: cross-entropy, one parameter group, every step taken, early stopping if configured."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        # train.early_stopping_patience > 0: stop on a stale train.early_stopping_metric, reload the best weights.
        self.early_stopping = EarlyStopping.from_config(cfg)

    # -- settings, asked once -------------------------------------------------------------
    def param_groups(self, model: nn.Module) -> List[Dict[str, Any]]:
        """Optimizer groups; a group may carry ``lr_factor`` relative to ``train.lr``."""
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def optimizer_weight_decay(self) -> float:
        return float(self.cfg.train.weight_decay)

    def batch_size_factor(self) -> int:
        """The loader's batch is ``train.batch_size`` times this (MIMOConv: the capacity N)."""
        return 1

    def passes_per_epoch(self) -> int:
        """Passes over the training data per epoch (MIMOConv: N); the schedule counts them."""
        return 1

    def phases(self) -> List[Phase]:
        """The run's phases: one, or the two of ``cross_res`` (see raysys/train/phases.py)."""
        return default_phases(self.cfg)

    def select_data(self, manifest: dict, selection: Any) -> Any:
        """The streams to read (a ``raysys.data.holdout.DataSelection``); may filter rows or add
        streams, e.g. a "final" stream that :meth:`on_fit_end` evaluates (STIR scenarios)."""
        return selection

    # -- values, asked during the loop ------------------------------------------------------
    def loss(self, model: nn.Module, outputs: torch.Tensor, targets: Any) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The loss to minimise and named extra terms to log (as tensors)."""
        return F.cross_entropy(outputs, targets), {}

    def eval_modes(self, model: nn.Module) -> Iterable[str]:
        """Names of the evaluation passes; "" is the plain one (metrics test_*)."""
        return [""]

    def set_eval_mode(self, model: nn.Module, mode: str) -> None:
        """Put the model in evaluation pass ``mode`` (e.g. another superposition); "" after the passes."""

    def on_evaluation_start(self, model: nn.Module) -> None:
        """Before each evaluation pass (training's epochs and ``raysys eval``): put the model in evaluation mode."""
        model.eval()

    def named_metrics(self, metrics: Dict[str, float]) -> Dict[str, float]:
        """An epoch's metrics as logged (STIR: the original's names and units)."""
        return metrics

    def shown_metrics(self, metrics: Dict[str, float]) -> Dict[str, float]:
        """An epoch's metrics for the console's epoch line, in the loop's names and units (STIR: its val pass)."""
        return metrics

    @property
    def should_stop(self) -> bool:
        """Whether the run stops before its next epoch (early stopping; also true after resuming a stopped run)."""
        return self.early_stopping.stopped

    # -- loop moments, in order -------------------------------------------------------------
    def on_phase_start(self, model: nn.Module, phase: Phase, resolution: int) -> None:
        """A phase begins: adapt the model to ``phase`` (input side ``resolution``); also called on resume."""

    def on_fit_start(self, loop: Any) -> None:
        """A run starts without a checkpoint of its own (not on resume), before its first epoch.

        ``loop`` is the worker's :class:`raysys.train.loop.EpochRunner`: a recipe may continue a
        checkpoint of another program here (its ``restore``, ``optimizer``, ``scheduler``,
        ``start_epoch``; antialiased ``--resume``)."""

    def on_train_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called on every worker before each training epoch (``epoch`` counts from 0)."""

    def on_train_batch_start(self, images: torch.Tensor, labels: torch.Tensor,
                             generator: torch.Generator) -> Tuple[torch.Tensor, Any]:
        """Before a training batch's forward: its inputs and targets (e.g. mixup); ``generator`` is the epoch's."""
        return images, labels

    def on_nonfinite_loss(self, loss: float, epoch: int, step: int) -> None:
        """A training batch's loss is NaN or infinite: the default stops the run; returning instead skips
        the optimizer step of that batch's group (the scheduler still advances)."""
        raise TrainingError(f"non-finite loss ({loss}) at epoch {epoch + 1}, batch {step}: lower train.lr or check the data")

    def on_before_optimizer_step(self, grad_norm: torch.Tensor) -> bool:
        """After the gradients are unscaled and clipped (``grad_norm``, before clipping): False skips this step."""
        return True

    def on_train_epoch_end(self, model: nn.Module, epoch: int) -> Dict[str, float]:
        """After the epoch's training and evaluation: statistics logged with the epoch (e.g. learned kernel sizes)."""
        return {}

    def on_validation_end(self, model: nn.Module, metrics: Dict[str, float]) -> None:
        """The epoch's metrics are complete (as logged, :meth:`named_metrics`), before its checkpoint.

        The default records them for early stopping (keeping the best epoch's weights); see :attr:`should_stop`."""
        self.early_stopping.update(metrics, model)

    def on_train_end(self, model: nn.Module) -> None:
        """After the last epoch (or an early stop): the default loads the best epoch's weights back."""
        self.early_stopping.restore_best(model)

    def on_fit_end(self, loop: Any, history: List[Dict[str, float]]) -> Dict[str, float]:
        """The run's final metrics, on every worker, after :meth:`on_train_end` (empty: none).

        ``loop`` is the worker's :class:`raysys.train.loop.EpochRunner`: its public
        ``evaluate_stream``, ``all_reduce``, and ``log_params``/``set_tags``/``log_artifact``,
        which rank 0 sends with the final metrics to the driver, which logs them to MLflow."""
        return {}

    # -- state (checkpointed) ---------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """What the hooks keep across epochs, as tensors and plain values (``torch.load(weights_only=True)`` reads it).

        A subclass with state of its own extends ``super().state_dict()``."""
        return {"early_stopping": self.early_stopping.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a key it lacks keeps its initial state: a checkpoint of an older raysys)."""
        if state.get("early_stopping"):
            self.early_stopping.load_state_dict(state["early_stopping"])


RECIPES.add("default", Recipe)


def build_recipe(cfg: Any) -> Recipe:
    return RECIPES.get(cfg.train.recipe)(cfg)
