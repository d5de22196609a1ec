"""MIMOConv's training recipe (train_superposition.py), as loop hooks.

- Batches: the loader takes ``capacity x train.batch_size`` images (the batch
  size after binding stays ``train.batch_size``) and each epoch passes over the
  data ``capacity`` times, so every model takes the same number of steps.
- Each training batch is bundled at ``superposition.sup_low`` with probability
  ``1 - superposition.sup_frequency``, else at the capacity.
- Mixup (before superposition), then cross-entropy + binding regularisation
  (HRR keys) + isometry regularisation (ISONet/MIMONet convolutions).
- Weight decay on every parameter except the activations' (PReLU/SReLU).
- The gradient-skip rule (:mod:`raysys.families.mimoconv.grad_skip`); its reference norm and
  running sums are the recipe's state (checkpointed, restored on resume).
- Evaluation at the capacity (``test_*``) and, for dynamic models, at
  ``sup_low`` (``test_sup_low_*``); with ``mimo.eval_batch_stats`` BatchNorm stays in
  training mode while evaluating, as the original (it never calls ``model.eval()``).
- Options of the original's behaviour: ``mimo_recipe.skip_nonfinite_loss`` (a NaN/inf loss
  skips its step instead of stopping the run) and ``mimo_recipe.transfer_learning_path``
  (``-t``: start from the name- and shape-matching tensors of a checkpoint).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple

import torch
from torch import nn

from raysys.config import renames
from raysys.config.schema import config_section
from raysys.errors import ConfigError
from raysys.families.mimoconv.evaluators import install_batch_padding
from raysys.families.mimoconv.grad_skip import GradientSkipRule
from raysys.families.mimoconv.mixup import MixedTargets, mixup
from raysys.families.mimoconv.models.original_weights import transfer_matching_weights
from raysys.train.recipes.base import RECIPES, Recipe

SUP_LOW_MODE = "sup_low"


@config_section("mimo_recipe")
@dataclass
class MimoRecipeConfig:
    """train_superposition.py's loss and step-gating flags (original defaults)."""

    # -j: weight of the HRR key regulariser (unit-norm, mutually orthogonal keys).
    binding_reg: float = 0.1
    # -o: weight of the isometry regulariser of the ISONet/MIMONet convolutions.
    isometry_reg: float = 1e-4
    # -a: mixup Beta(alpha, alpha); 0 turns mixup off.
    mixup_alpha: float = 1.0
    # -g: skip a step whose gradient norm is >= this times the last epoch's mean.
    grad_skip_ratio: float = 10.0
    # A NaN/inf loss skips its optimizer step (counted in skipped_steps and nonfinite_losses)
    # instead of stopping the run, as the original (its gradient-norm test rejects NaN).
    skip_nonfinite_loss: bool = False
    # -t: a checkpoint (the original's <identifier>_model.pt or a raysys one) whose tensors of
    # matching name and shape initialise the model; the others keep their initialisation.
    transfer_learning_path: str = ""


# Added since runs were first recorded; a run recorded before them behaved as these values.
renames.added_key("mimo_recipe.skip_nonfinite_loss", False)
renames.added_key("mimo_recipe.transfer_learning_path", "")


def sup_low(cfg: Any, capacity: int) -> int:
    """The low-demand superposition: ``superposition.sup_low``, 0 meaning the capacity."""
    low = int(cfg.superposition.sup_low) or capacity
    if low < 1 or capacity % low:
        raise ConfigError(f"superposition.sup_low={low} must divide superposition.capacity={capacity}")
    return low


@RECIPES.register("mimo")
class MimoRecipe(Recipe):
    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.options = cfg.mimo_recipe
        self.capacity = int(cfg.superposition.capacity)
        self.low = sup_low(cfg, self.capacity)
        self.frequency = float(cfg.superposition.sup_frequency)
        if not 0.0 <= self.frequency <= 1.0:
            raise ConfigError(f"superposition.sup_frequency={self.frequency} must be between 0 and 1")
        self.skip_rule = GradientSkipRule(self.options.grad_skip_ratio)
        self.model: nn.Module | None = None
        self.transfer_path = str(self.options.transfer_learning_path or "")

    # -- batches and epochs ----------------------------------------------------------
    def batch_size_factor(self) -> int:
        return self.capacity

    def passes_per_epoch(self) -> int:
        return self.capacity

    def phases(self):
        """The default single phase; asked on the driver before Ray starts, so a missing ``-t`` file is refused there."""
        if self.transfer_path and not Path(self.transfer_path).expanduser().is_file():
            raise ConfigError(f"mimo_recipe.transfer_learning_path={self.transfer_path!r} is not a file "
                              "(give a local checkpoint: the original's <identifier>_model.pt or a raysys state.pt)")
        return super().phases()

    # -- optimisation ---------------------------------------------------------------------
    def param_groups(self, model: nn.Module) -> List[Dict[str, Any]]:
        """No weight decay on the activations' parameters (PReLU slopes, SReLU offsets)."""
        activation = {id(p) for p in model.activation_parameters()}
        trainable = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if id(p) not in activation]}]
        no_decay = [p for p in trainable if id(p) in activation]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return groups

    def on_fit_start(self, loop: Any) -> None:
        """``-t`` on a fresh run (a resumed one keeps its own weights): the transfer checkpoint's matching tensors."""
        if self.transfer_path:
            transfer_matching_weights(loop.bare, self.transfer_path)

    def on_train_epoch_start(self, model: nn.Module, epoch: int) -> None:
        self.model = install_batch_padding(model)
        self.skip_rule.start_epoch()
        # Seeded without the rank: every DDP worker bundles the same step at the same n.
        self.superposition_draws = torch.Generator().manual_seed(int(self.cfg.seed) * 1_000_033 + epoch)

    def choose_superposition(self, generator: torch.Generator) -> int:
        """sup_low with probability 1 - sup_frequency, else the capacity."""
        if self.frequency < 1.0 and float(torch.rand((), generator=generator)) > self.frequency:
            return self.low
        return self.capacity

    def on_train_batch_start(self, images: torch.Tensor, labels: torch.Tensor,
                             generator: torch.Generator) -> Tuple[torch.Tensor, Any]:
        if self.model is not None:
            self.model.set_superposition(self.choose_superposition(self.superposition_draws))
        return mixup(images, labels, float(self.options.mixup_alpha), generator)

    def loss(self, model: nn.Module, outputs: torch.Tensor, targets: MixedTargets):
        binding = model.binding_regularization()
        isometry = model.isometry_regularization()
        total = (
            targets.loss(outputs.float())
            + float(self.options.binding_reg) * binding
            + float(self.options.isometry_reg) * isometry
        )
        return total, {"binding_reg": binding.detach().float(), "isometry_reg": isometry.detach().float()}

    def on_nonfinite_loss(self, loss: float, epoch: int, step: int) -> None:
        """Skip the step (the loop does), as the original, or stop the run (the default)."""
        if not self.options.skip_nonfinite_loss:
            super().on_nonfinite_loss(loss, epoch, step)

    def on_before_optimizer_step(self, grad_norm: torch.Tensor) -> bool:
        return self.skip_rule.accept(float(grad_norm))

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "grad_skip": self.skip_rule.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("grad_skip"):
            self.skip_rule.load_state_dict(state["grad_skip"])

    # -- evaluation -------------------------------------------------------------------------
    def eval_modes(self, model: nn.Module) -> Iterable[str]:
        return [""] if self.low == self.capacity else ["", SUP_LOW_MODE]

    def on_evaluation_start(self, model: nn.Module) -> None:
        """``mimo.eval_batch_stats``: BatchNorm in training mode (batch statistics; the running ones
        updated by the test batches), as train_superposition.py and validate_dynamic.py evaluate."""
        model.train(bool(self.cfg.mimo.eval_batch_stats))

    def set_eval_mode(self, model: nn.Module, mode: str) -> None:
        install_batch_padding(model)
        model.set_superposition(self.low if mode == SUP_LOW_MODE else self.capacity)

    def on_train_epoch_end(self, model: nn.Module, epoch: int) -> Dict[str, float]:
        metrics = {k: v for k, v in self.skip_rule.metrics().items() if v == v}  # drop NaN
        if self.skip_rule.threshold != float("inf"):
            metrics["grad_skip_threshold"] = self.skip_rule.threshold
        relu = model.mean_relu_parameter()
        if relu is not None:
            metrics["mean_relu_parameter"] = float(relu)
        alpha = model.mean_abs_alpha()
        if alpha is not None:
            metrics["mean_abs_alpha"] = float(alpha)
        return metrics
