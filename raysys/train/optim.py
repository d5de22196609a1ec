"""Optimizers and per-iteration learning-rate schedules, built from the Config."""
from __future__ import annotations

import math
from typing import Any, Dict, List

import torch
from torch.optim import lr_scheduler

from raysys.errors import ConfigError
from raysys.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer", config_key="train.optimizer")
SCHEDULERS: Registry = Registry("scheduler", config_key="train.scheduler")


@OPTIMIZERS.register("SGD", aliases=["sgd"])
def sgd(cfg, groups: List[Dict[str, Any]], weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        groups, lr=cfg.train.lr, momentum=cfg.train.momentum,
        nesterov=cfg.train.nesterov, weight_decay=weight_decay,
    )


@OPTIMIZERS.register("Adam", aliases=["adam"])
def adam(cfg, groups: List[Dict[str, Any]], weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=cfg.train.lr, betas=tuple(cfg.train.betas), weight_decay=weight_decay)


@OPTIMIZERS.register("AdamW", aliases=["adamw"])
def adamw(cfg, groups: List[Dict[str, Any]], weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=tuple(cfg.train.betas), weight_decay=weight_decay)


def build_optimizer(cfg, groups: List[Dict[str, Any]], weight_decay: float) -> torch.optim.Optimizer:
    """Param groups may carry ``lr_factor``: their lr is the base lr times it."""
    for group in groups:
        factor = group.pop("lr_factor", None)
        if factor is not None:
            group["lr"] = cfg.train.lr * factor
    return OPTIMIZERS.get(cfg.train.optimizer)(cfg, groups, weight_decay)


def _param(cfg, key: str, default: Any) -> Any:
    return cfg.train.scheduler_params.get(key, default)


def _with_warmup(cfg, optimizer, main: lr_scheduler.LRScheduler | None, steps_per_epoch: int):
    """Prefix ``main`` with a linear warm-up over ``warmup_epochs`` (0: none)."""
    warmup_iters = int(round(float(_param(cfg, "warmup_epochs", 0)) * steps_per_epoch))
    if warmup_iters <= 0:
        return main or lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    # lr of step k (0-based) is (k + 1) / warmup_iters of the base lr: full at the last warm-up step.
    warmup = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup_iters, end_factor=1.0, total_iters=max(1, warmup_iters - 1))
    if main is None:
        return warmup
    return lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warmup_iters])


def _main_iters(cfg, steps_per_epoch: int) -> int:
    warmup_iters = int(round(float(_param(cfg, "warmup_epochs", 0)) * steps_per_epoch))
    return max(1, cfg.train.epochs * steps_per_epoch - warmup_iters)


@SCHEDULERS.register("cosine")
def cosine(cfg, optimizer, steps_per_epoch: int):
    """Cosine per iteration down to ``eta_min`` (1e-6) after the linear warm-up (FlexConv)."""
    main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=_main_iters(cfg, steps_per_epoch), eta_min=float(_param(cfg, "eta_min", 1e-6)))
    return _with_warmup(cfg, optimizer, main, steps_per_epoch)


@SCHEDULERS.register("onecycle", aliases=["OneCycle", "one_cycle"])
def onecycle(cfg, optimizer, steps_per_epoch: int):
    """OneCycleLR with torch's defaults; ``train.lr`` is the peak lr (MIMOConv)."""
    return lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
        total_steps=cfg.train.epochs * steps_per_epoch,
        pct_start=float(_param(cfg, "pct_start", 0.3)),
        div_factor=float(_param(cfg, "div_factor", 25.0)),
        final_div_factor=float(_param(cfg, "final_div_factor", 1e4)),
        cycle_momentum="momentum" in optimizer.defaults or "betas" in optimizer.defaults,
    )


@SCHEDULERS.register("step")
def step(cfg, optimizer, steps_per_epoch: int):
    """Multiply the lr by ``gamma`` (0.1) every ``step_size`` epochs (30: antialiased CNNs)."""
    every = int(_param(cfg, "step_size", 30)) * steps_per_epoch
    main = lr_scheduler.StepLR(optimizer, step_size=max(1, every), gamma=float(_param(cfg, "gamma", 0.1)))
    return _with_warmup(cfg, optimizer, main, steps_per_epoch)


@SCHEDULERS.register("multistep")
def multistep(cfg, optimizer, steps_per_epoch: int):
    milestones = [int(m) * steps_per_epoch for m in _param(cfg, "milestones", [])]
    main = lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=float(_param(cfg, "gamma", 0.1)))
    return _with_warmup(cfg, optimizer, main, steps_per_epoch)


@SCHEDULERS.register("exponential")
def exponential(cfg, optimizer, steps_per_epoch: int):
    """Per-epoch decay ``gamma``, applied smoothly per iteration."""
    gamma = float(_param(cfg, "gamma", 0.95)) ** (1.0 / steps_per_epoch)
    return _with_warmup(cfg, optimizer, lr_scheduler.ExponentialLR(optimizer, gamma=gamma), steps_per_epoch)


@SCHEDULERS.register("constant", aliases=["none", "None"])
def constant(cfg, optimizer, steps_per_epoch: int):
    return _with_warmup(cfg, optimizer, None, steps_per_epoch)


def build_scheduler(cfg, optimizer, steps_per_epoch: int) -> lr_scheduler.LRScheduler:
    """A scheduler stepped once per optimisation step."""
    if steps_per_epoch <= 0:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} leaves no training steps per epoch")
    return SCHEDULERS.get(cfg.train.scheduler)(cfg, optimizer, steps_per_epoch)


def steps_per_epoch(train_rows: int, batch_size: int) -> int:
    """Optimisation steps per epoch for the global batch size (same for any world size)."""
    return math.ceil(train_rows / batch_size)
