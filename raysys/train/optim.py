"""Optimizers and per-iteration learning-rate schedules, built from the Config."""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, List, Mapping, Tuple

import torch
from omegaconf import OmegaConf
from torch.optim import lr_scheduler

from raysys.errors import ConfigError, did_you_mean
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


# ---- the keys each scheduler reads from train.scheduler_params --------------------------
# (accepts(value), what is allowed): checked on the driver before Ray starts (check_scheduler_params).
ParamRule = Tuple[Callable[[Any], bool], str]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


NON_NEGATIVE: ParamRule = (lambda v: _is_number(v) and v >= 0, "a number >= 0")
WARMUP: ParamRule = (lambda v: _is_number(v) and v >= 0, "a number of epochs >= 0 (0 = no warm-up)")
POSITIVE: ParamRule = (lambda v: _is_number(v) and v > 0, "a number > 0")
POSITIVE_INT: ParamRule = (lambda v: _is_int(v) and v >= 1, "a whole number of epochs >= 1")
FRACTION: ParamRule = (lambda v: _is_number(v) and 0 < v < 1, "a number between 0 and 1 (exclusive)")
MILESTONES: ParamRule = (
    lambda v: not isinstance(v, (str, bytes, Mapping)) and hasattr(v, "__iter__") and all(_is_int(m) and m >= 0 for m in v),
    "a list of whole epoch numbers >= 0, e.g. [100, 150]",
)


def _uses(**params: ParamRule):
    """Declare the ``train.scheduler_params`` keys a scheduler reads, with what each allows."""

    def mark(builder):
        builder.params = dict(params)
        return builder

    return mark


def scheduler_param_rules(name: str) -> Dict[str, ParamRule]:
    """{key: (accepts, allowed)} of the scheduler ``name`` (canonical name or alias)."""
    return dict(getattr(SCHEDULERS.get(name), "params", {}))


def check_scheduler_params(cfg, inherited: Mapping[str, Any] = None) -> None:
    """ConfigError for a ``train.scheduler_params`` key the chosen scheduler does not read, or a bad value.

    ``inherited`` are the params the preset itself gives (``{}`` for none). A
    preset cannot delete a key it inherits, so a key of another scheduler that
    the preset chain carries unchanged (``step_size`` in a cosine preset over a
    step base; the schema's ``warmup_epochs: 0`` under onecycle) is not the
    user's choice and passes; the same key given with another value is refused.
    A key that no scheduler reads is always refused.
    """
    name = SCHEDULERS.canonical(cfg.train.scheduler)
    rules = scheduler_param_rules(name)
    known = {key for _, builder in SCHEDULERS.items() for key in getattr(builder, "params", {})}
    inherited = dict(inherited or {})
    params = cfg.train.scheduler_params
    for key in params:
        value = params[key]
        if key in rules:
            accepts, allowed = rules[key]
            if not accepts(value):
                raise ConfigError(f"bad value for 'train.scheduler_params.{key}': {_plain(value)!r} (must be {allowed})")
            continue
        if key in known and key in inherited and _plain(inherited[key]) == _plain(value):
            continue  # carried over from the preset chain, not chosen here
        allowed = sorted(rules)
        hint = did_you_mean(key, allowed) if key not in known else ""
        raise ConfigError(
            f"train.scheduler_params.{key} is not used by train.scheduler={name}{hint}; "
            f"{name} reads only {allowed if allowed else 'no parameters'}"
        )


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


@SCHEDULERS.register("cosine")
@_uses(warmup_epochs=WARMUP, eta_min=NON_NEGATIVE)
def cosine(cfg, optimizer, steps_per_epoch: int):
    """Cosine per iteration down to ``eta_min`` (1e-6) after the linear warm-up (FlexConv)."""
    main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=_main_iters(cfg, steps_per_epoch), eta_min=float(_param(cfg, "eta_min", 1e-6)))
    return _with_warmup(cfg, optimizer, main, steps_per_epoch)


@SCHEDULERS.register("onecycle", aliases=["OneCycle", "one_cycle"])
@_uses(pct_start=FRACTION, div_factor=POSITIVE, final_div_factor=POSITIVE)
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
@_uses(warmup_epochs=WARMUP, step_size=POSITIVE_INT, gamma=POSITIVE)
def step(cfg, optimizer, steps_per_epoch: int):
    """Multiply the lr by ``gamma`` (0.1) every ``step_size`` epochs (30: antialiased CNNs)."""
    every = int(_param(cfg, "step_size", 30)) * steps_per_epoch
    main = lr_scheduler.StepLR(optimizer, step_size=max(1, every), gamma=float(_param(cfg, "gamma", 0.1)))
    return _with_warmup(cfg, optimizer, main, steps_per_epoch)


@SCHEDULERS.register("multistep")
@_uses(warmup_epochs=WARMUP, milestones=MILESTONES, gamma=POSITIVE)
def multistep(cfg, optimizer, steps_per_epoch: int):
    milestones = [int(m) * steps_per_epoch for m in _param(cfg, "milestones", [])]
    main = lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=float(_param(cfg, "gamma", 0.1)))
    return _with_warmup(cfg, optimizer, main, steps_per_epoch)


@SCHEDULERS.register("exponential")
@_uses(warmup_epochs=WARMUP, gamma=POSITIVE)
def exponential(cfg, optimizer, steps_per_epoch: int):
    """Per-epoch decay ``gamma``, applied smoothly per iteration."""
    gamma = float(_param(cfg, "gamma", 0.95)) ** (1.0 / steps_per_epoch)
    return _with_warmup(cfg, optimizer, lr_scheduler.ExponentialLR(optimizer, gamma=gamma), steps_per_epoch)


@SCHEDULERS.register("constant", aliases=["none", "None"])
@_uses(warmup_epochs=WARMUP)
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
