"""Gradient accumulation: one optimizer step per ``accumulate_steps`` batches.

The batches of an epoch fall into groups of ``accumulate_steps``; the last
group may be shorter. Each batch's loss is divided by its group's size, so a
step sees the mean gradient over the group's examples: with equal batch sizes
that is exactly the gradient of one batch of ``batch_size * accumulate_steps``
(batch-norm statistics aside, as in the original). ``sum=True`` is the
original antialiased-cnns ``-ba``, which adds the batches' gradients (an
effective learning rate of ``lr * accumulate_steps``) and takes no step for a
shorter last group: its gradients are dropped by the next epoch's
``zero_grad`` (main.py:434-460). Under DDP the gradients are all-reduced once
per group (``no_sync`` on the other batches).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from torch import nn

from raysys.errors import ConfigError


@dataclass(frozen=True)
class Accumulation:
    steps: int  # batches per optimizer step
    batches: int  # batches per epoch on this worker
    sum: bool = False

    def __post_init__(self):
        if self.steps < 1:
            raise ConfigError(f"train.accumulate_steps must be >= 1, got {self.steps}")

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps per epoch (a last, shorter group steps too, except with ``sum``)."""
        if self.sum:
            return self.batches // self.steps
        return -(-max(self.batches, 1) // self.steps)

    def opens_group(self, batch: int) -> bool:
        return batch % self.steps == 0

    def closes_group(self, batch: int) -> bool:
        return (batch + 1) % self.steps == 0 or (not self.sum and batch + 1 >= self.batches)

    def group_size(self, batch: int) -> int:
        start = batch - batch % self.steps
        return max(1, min(self.steps, self.batches - start))

    def loss_scale(self, batch: int) -> float:
        return 1.0 if self.sum else 1.0 / self.group_size(batch)

    def sync(self, model: nn.Module, batch: int):
        """DDP's ``no_sync`` on every batch but a group's last; a no-op otherwise."""
        if self.closes_group(batch) or not hasattr(model, "no_sync"):
            return nullcontext()
        return model.no_sync()
