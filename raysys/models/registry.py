"""The model registry: one decorator per architecture, builders take the Config."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from raysys.registry import Registry


@dataclass(frozen=True)
class InputSpec:
    """What the data feeds the model: channels, side length and classes."""

    channels: int
    size: int
    num_classes: int


ModelBuilder = Callable[[Any, InputSpec], nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model", config_key="model.name")


def register_model(name: str, aliases=()) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder(cfg, spec) -> nn.Module`` under ``name`` (and aliases)."""
    return MODELS.register(name, aliases)


def build_model(cfg: Any, spec: InputSpec) -> nn.Module:
    """Build the architecture named by ``cfg.model.name`` for inputs like ``spec``."""
    return MODELS.get(cfg.model.name)(cfg, spec)
