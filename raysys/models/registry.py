"""The model registry: each architecture is a factory with plain keyword arguments (timm style).

A factory builds a model from keyword arguments alone, so it is usable from Python without
raysys's config: ``create_model("cifar_resnet20", in_channels=3, num_classes=10)``. Each entry
also has an *adapter* that maps a run's config (the family's section) and the data's
:class:`InputSpec` to those keyword arguments; :func:`build_model` composes the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict

from torch import nn

from raysys.registry import Registry


@dataclass(frozen=True)
class InputSpec:
    """What the data feeds the model: channels, side length and classes."""

    channels: int
    size: int
    num_classes: int


ModelFactory = Callable[..., nn.Module]
ConfigAdapter = Callable[[Any, InputSpec], Dict[str, Any]]


def input_kwargs(cfg: Any, spec: InputSpec) -> Dict[str, Any]:
    """The default adapter: a model that needs only its input channels and class count."""
    return dict(in_channels=spec.channels, num_classes=spec.num_classes)


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: its keyword-argument factory and its config adapter."""

    factory: ModelFactory
    adapter: ConfigAdapter = input_kwargs

    def build(self, cfg: Any, spec: InputSpec) -> nn.Module:
        return self.factory(**self.adapter(cfg, spec))


MODELS: Registry[ModelEntry] = Registry("model", config_key="model.name")


def register_model(name: str, aliases=(), adapter: ConfigAdapter = input_kwargs) -> Callable[[ModelFactory], ModelFactory]:
    """Register ``factory(**kwargs) -> nn.Module`` under ``name``; ``adapter(cfg, spec)`` gives its kwargs."""

    def add(factory: ModelFactory) -> ModelFactory:
        MODELS.add(name, ModelEntry(factory, adapter), aliases)
        return factory

    return add


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the architecture ``name`` from plain keyword arguments, without a config."""
    return MODELS.get(name).factory(**kwargs)


def model_kwargs(cfg: Any, spec: InputSpec) -> Dict[str, Any]:
    """The keyword arguments ``cfg`` gives the factory of ``cfg.model.name`` for inputs like ``spec``."""
    return MODELS.get(cfg.model.name).adapter(cfg, spec)


def build_model(cfg: Any, spec: InputSpec) -> nn.Module:
    """Build the architecture named by ``cfg.model.name`` for inputs like ``spec``."""
    return MODELS.get(cfg.model.name).build(cfg, spec)
