"""Training phases: one Ray Train run made of consecutive stretches of epochs.

A plain run is one phase of ``train.epochs`` epochs. A cross-resolution run
(the ``cross_res`` section, FlexConv's ``run_crossres.py``; only FlexConv runs have it:
raysys/families/flexconv/config.py) is two: train at
``cross_res.source_res``, then -- after the recipe adapts the model to the new
resolution and the model is evaluated "out of the box" -- fine-tune at
``cross_res.target_res`` for ``cross_res.finetune_epochs`` with a fresh
optimizer and schedule. Epochs are numbered globally across phases; the
checkpoint records the phase its optimizer belongs to, so a resumed run
continues in the right phase.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Tuple

from omegaconf import OmegaConf

from raysys.errors import ConfigError


@dataclass(frozen=True)
class Phase:
    """``epochs`` epochs at input side ``resolution`` (0 = ``data.resize`` / native)."""

    name: str
    epochs: int
    resolution: int = 0
    lr: float = 0.0  # 0 = train.lr
    # Evaluate before the first epoch; the metrics get this prefix (e.g. "ootb").
    eval_on_start: str = ""


def cross_res_enabled(cfg: Any) -> bool:
    section = getattr(cfg, "cross_res", None)
    return bool(section is not None and (section.source_res or section.target_res))


def validate_cross_res(cfg: Any) -> None:
    """The original's checks: both sides set, even and different; some fine-tuning."""
    cr = cfg.cross_res
    if cr.source_res < 1 or cr.target_res < 1:
        raise ConfigError(f"cross_res.source_res={cr.source_res} and cross_res.target_res={cr.target_res} must both be positive")
    for key in ("source_res", "target_res"):
        if getattr(cr, key) % 2:
            raise ConfigError(f"cross_res.{key}={getattr(cr, key)} must be even (the kernel grid is side + 1, which must be odd)")
    if cr.source_res == cr.target_res:
        raise ConfigError(f"cross_res.source_res and cross_res.target_res are both {cr.source_res}; they must differ")
    if cr.finetune_epochs < 1:
        raise ConfigError(f"cross_res.finetune_epochs={cr.finetune_epochs} must be at least 1")


def default_phases(cfg: Any) -> List[Phase]:
    """One phase, or the two phases of ``cross_res``."""
    if not cross_res_enabled(cfg):
        return [Phase("train", int(cfg.train.epochs), int(cfg.data.resize))]
    validate_cross_res(cfg)
    cr = cfg.cross_res
    return [
        Phase("source", int(cfg.train.epochs), int(cr.source_res)),
        Phase("finetune", int(cr.finetune_epochs), int(cr.target_res), float(cr.finetune_lr), eval_on_start="ootb"),
    ]


def total_epochs(phases: List[Phase]) -> int:
    return sum(p.epochs for p in phases)


def phase_start(phases: List[Phase], index: int) -> int:
    """The global epoch (0-based) at which phase ``index`` begins."""
    return sum(p.epochs for p in phases[:index])


def locate(phases: List[Phase], epoch: int) -> Tuple[int, int]:
    """(phase index, epoch within the phase) of global 0-based ``epoch``."""
    start = 0
    for index, phase in enumerate(phases):
        if epoch < start + phase.epochs:
            return index, epoch - start
        start += phase.epochs
    return len(phases) - 1, epoch - phase_start(phases, len(phases) - 1)


def phase_config(cfg: Any, phase: Phase) -> Any:
    """``cfg`` as the phase's optimizer and scheduler see it (its epochs and lr)."""
    if phase.epochs == cfg.train.epochs and phase.lr <= 0:
        return cfg
    copy = OmegaConf.create(OmegaConf.to_container(cfg))
    copy.train.epochs = phase.epochs
    if phase.lr > 0:
        copy.train.lr = phase.lr
    return copy


def ends_phase(phases: List[Phase], epoch: int) -> bool:
    """Whether global 0-based ``epoch`` is the last of its phase (always checkpointed)."""
    index, offset = locate(phases, epoch)
    return offset + 1 == phases[index].epochs
