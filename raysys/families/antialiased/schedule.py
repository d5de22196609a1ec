"""``train.scheduler=epoch_cosine``: the original ``main.py --cos_lr`` schedule.

The original builds ``CosineAnnealingLR(optimizer, T_max=epochs)`` and steps it once at the
start of every epoch, before training (main.py:382-395), so epoch ``e`` (from 0) trains at
``eta_min + (lr - eta_min) * (1 + cos(pi * (e + 1) / epochs)) / 2``: the lr is constant within
an epoch, the first epoch is already below ``lr`` and the last trains at ``eta_min`` (0).
raysys's ``cosine`` instead decays per iteration from ``lr``.
"""
from __future__ import annotations

import math

from torch.optim import lr_scheduler

from raysys.train.optim import NON_NEGATIVE, SCHEDULERS


def epoch_cosine_factor(step: int, steps_per_epoch: int, epochs: int) -> float:
    """The cosine factor in (0, 1] of the epoch that optimizer step ``step`` (from 0) belongs to."""
    epoch = min(step // steps_per_epoch + 1, epochs)
    return (1 + math.cos(math.pi * epoch / epochs)) / 2


@SCHEDULERS.register("epoch_cosine", aliases=["cos_lr"])
def epoch_cosine(cfg, optimizer, steps_per_epoch: int):
    """Cosine over epochs, stepped at each epoch's start (the original's ``--cos_lr``); ``eta_min`` (0) is the floor."""
    epochs = max(1, int(cfg.train.epochs))
    eta_min = float(cfg.train.scheduler_params.get("eta_min", 0.0))

    def group_lambda(base_lr: float):
        floor = eta_min / base_lr if base_lr > 0 else 0.0
        return lambda step: floor + (1 - floor) * epoch_cosine_factor(step, steps_per_epoch, epochs)

    return lr_scheduler.LambdaLR(optimizer, [group_lambda(group["lr"]) for group in optimizer.param_groups])


epoch_cosine.params = {"eta_min": NON_NEGATIVE}  # the train.scheduler_params it reads (raysys/train/optim.py)
