"""torchvision's ImageNet classifiers as shared models: ``resnet18``, ``vgg16``, ``mobilenet_v2``, ...

Any family may use them (``model.name=resnet50``); the antialiased family builds its
``<arch>_lpf<N>`` on top of them. A model is torchvision's own class, randomly initialised
(``weights=None``); ``weights`` loads a file or URL into it strictly
(:mod:`raysys.models.weights`). From Python:
``create_model("resnet50", num_classes=10, in_channels=1, weights="")``.

In a run, the adapter takes the classes and input channels from the data and the initial
weights from a config key a family registered (:func:`register_weights_key`, e.g.
``antialias.weights``), so a preset keeps loading weights into a baseline.

torchvision is imported where a model is built, not at import time: importing it loads
``torch._dynamo`` (seconds), and every Ray Train worker imports this module.
"""
from __future__ import annotations

import functools
from typing import Any, Dict, List

from omegaconf import OmegaConf
from torch import nn

from raysys.errors import CheckpointError
from raysys.models.registry import InputSpec, register_model
from raysys.models.weights import load_state, read_weights

# The architectures of the antialiased-cnns model zoo (its README's table), all in torchvision.
ARCHITECTURES = (
    "alexnet",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "mobilenet_v2",
)

# Config keys (dotted) that name a run's initial weights file; a family adds its own.
_WEIGHTS_KEYS: List[str] = []


def register_weights_key(key: str) -> None:
    """Declare that the config key ``key`` (e.g. ``antialias.weights``) names initial weights for these models."""
    if key not in _WEIGHTS_KEYS:
        _WEIGHTS_KEYS.append(key)


def configured_weights(cfg: Any) -> str:
    """The initial weights the run's config names (the first non-empty registered key), or ""."""
    for key in _WEIGHTS_KEYS:
        value = OmegaConf.select(cfg, key, default="") if OmegaConf.is_config(cfg) else ""
        if value:
            return str(value)
    return ""


def adapt_input_channels(model: nn.Module, channels: int) -> None:
    """Swap the first conv for one taking ``channels`` inputs (e.g. 1 for MNIST-like data)."""
    if channels == 3:
        return
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                new = nn.Conv2d(
                    channels, child.out_channels, child.kernel_size, stride=child.stride, padding=child.padding,
                    bias=child.bias is not None,
                )
                nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
                if new.bias is not None:
                    nn.init.zeros_(new.bias)
                setattr(parent, name, new)
                return
    raise TypeError(f"{type(model).__name__} has no Conv2d")


def build_torchvision(arch: str, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """torchvision's ``arch``, randomly initialised (weights=None)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown torchvision architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    import torchvision

    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    adapt_input_channels(model, in_channels)
    return model


def torchvision_model(arch: str, num_classes: int = 1000, in_channels: int = 3, weights: str = "") -> nn.Module:
    """The baseline ``arch``; ``weights`` (a local file or URL) is loaded strictly and must be a baseline's."""
    model = build_torchvision(arch, num_classes, in_channels)
    if weights:
        stored = read_weights(weights)
        if stored.arch and stored.arch != arch:
            raise CheckpointError(f"weights {weights} are of {stored.arch}, not of the model {arch}")
        load_state(model, stored.state, str(weights))
    return model


def baseline_weights_url(arch: str) -> str:
    """torchvision's download URL of ``arch``'s ImageNet weights (``IMAGENET1K_V1``, what ``pretrained=True`` gave)."""
    from torchvision.models import get_model_weights

    return get_model_weights(arch).IMAGENET1K_V1.url


def torchvision_kwargs(cfg: Any, spec: InputSpec) -> Dict[str, Any]:
    """The adapter: classes and input channels of the data, the initial weights the config names."""
    return dict(num_classes=spec.num_classes, in_channels=spec.channels, weights=configured_weights(cfg))


for _arch in ARCHITECTURES:
    register_model(_arch, adapter=torchvision_kwargs)(functools.partial(torchvision_model, _arch))
