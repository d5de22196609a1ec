"""CIFAR ResNets (He et al. 2016, Sec. 4.2) with option-A shortcuts.

The FlexConv baselines ``net.type=CIFARResNet{20,...,1202}``: 3 stages of
16/32/64 channels with n basic blocks each (depth = 6n + 2), parameter-free
shortcuts that subsample and zero-pad channels, Kaiming-normal init of every
conv and linear weight. ResNet-20 has 0.27M parameters, ResNet-32 0.46M.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raysys.models.registry import register_model

STAGE_WIDTHS = (16, 32, 64)


class PadShortcut(nn.Module):
    """Option A: take every other pixel and zero-pad the new channels evenly."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.extra_channels // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, half))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes_shape = stride != 1 or in_planes != planes
        self.shortcut = PadShortcut(planes - in_planes) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CIFARResNet(nn.Module):
    def __init__(self, depth: int, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        stages, in_planes = [], STAGE_WIDTHS[0]
        for i, planes in enumerate(STAGE_WIDTHS):
            stride = 1 if i == 0 else 2
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(STAGE_WIDTHS[-1], num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def _register(depth: int) -> None:
    @register_model(f"cifar_resnet{depth}", aliases=[f"CIFARResNet{depth}"])
    def build(in_channels: int = 3, num_classes: int = 10) -> nn.Module:
        return CIFARResNet(depth, in_channels, num_classes)


for _depth in (20, 32, 44, 56, 110, 1202):
    _register(_depth)
