"""The pre-activation wide ResNet block of MIMOConv, with a pluggable activation.

``BN -> act -> conv3x3(stride) -> BN -> act -> conv3x3`` plus the shortcut (a 1x1
conv + BN when the shape changes), as the original's ``BasicBlock``: ReLU for
WideResNet and WideISOReLUNet, SReLU for WideISONet (``BasicISOBlock``), PReLU for
MIMONet (``AdjustedISOBlock``). With ``skip_init`` the output is
``alpha * branch + shortcut`` with ``alpha`` starting at 0. Module names follow the
original (``bn1``, ``relu1``, ``conv1``, ..., ``downsample``, ``alpha``).
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch
from torch import nn

from raysys.families.mimoconv.layers.isometry import SReLU
from raysys.registry import Registry

Norm = Callable[[int], nn.Module]


class ActivationKind:
    """How to build one activation kind and what its parameter starts at."""

    def __init__(self, build: Callable[[int, float], nn.Module], default_init: Optional[float]):
        self.build = build
        self.default_init = default_init


ACTIVATIONS: Registry[ActivationKind] = Registry("MIMOConv block activation")
ACTIVATIONS.add("relu", ActivationKind(lambda channels, init: nn.ReLU(inplace=True), None))
ACTIVATIONS.add("srelu", ActivationKind(lambda channels, init: SReLU(channels, init), -1.0))
ACTIVATIONS.add("prelu", ActivationKind(lambda channels, init: nn.PReLU(channels, init), 0.5))


def no_norm(channels: int) -> nn.Module:
    """Stands in for BatchNorm when ``mimo.batch_norm_disabled`` is set."""
    return nn.Identity()


class WideBlock(nn.Module):
    """One pre-activation wide ResNet block."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: Norm,
                 activation: Callable[[int], nn.Module], skip_init: bool = False):
        super().__init__()
        self.bn1 = norm(in_channels)
        self.relu1 = activation(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = norm(out_channels)
        self.relu2 = activation(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), norm(out_channels))
        self.skip_init = skip_init
        # Always a parameter, as the original (it counts towards the parameter total);
        # frozen when SkipInit is off because it then never enters the forward pass.
        self.alpha = nn.Parameter(torch.tensor(0.0), requires_grad=skip_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.bn1(x)))
        out = self.conv2(self.relu2(self.bn2(out)))
        identity = x if self.downsample is None else self.downsample(x)
        if self.skip_init:
            return self.alpha * out + identity
        return out + identity

    def isometric_convs(self) -> List[nn.Conv2d]:
        """The convs the isometry penalty (and Dirac init) applies to."""
        convs = [self.conv1, self.conv2]
        if self.downsample is not None:
            convs.append(self.downsample[0])
        return convs

    def activation_parameters(self) -> List[nn.Parameter]:
        return [p for act in (self.relu1, self.relu2) for p in act.parameters()]
