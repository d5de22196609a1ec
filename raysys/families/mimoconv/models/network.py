"""MIMOConv's networks (Menet et al., NeurIPS 2023): wide ResNets computing in superposition.

    stem conv3x3 (16·initial_width) -> BN -> ReLU
    -> bind n images with n keys and sum them (bundling)
    -> three stages of wide pre-activation blocks (16, 32, 64 x width; stride 1, 2, 2)
    -> global average pool -> unbind: 1x1 conv to N·64w + ReLU, mean over repeats
    -> fc, one row of logits per input image

There is no final BN-ReLU before the pool (as the original). The model is built for a
capacity N; :meth:`SuperWideNet.set_superposition` chooses how many images n (n | N)
each forward bundles: the n images are repeated N/n times so every key and unbinding
slot is used, and the N/n unbound copies of each image are averaged. Same weights for
every n; only the number of images per bundle changes.

With binding ``None`` and N = 1 the network is a plain WRN (no unbinding layer).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raysys.errors import ConfigError
from raysys.families.mimoconv.models.blocks import ACTIVATIONS, WideBlock, no_norm
from raysys.families.mimoconv.layers.binding import BINDINGS
from raysys.families.mimoconv.layers.isometry import isometry_regularization

# The leaky-ReLU slope the original meant to use for re-initialising ISO blocks.
ISO_INIT_SLOPE = {"srelu": 0.45, "prelu": 0.5}


class SuperWideNet(nn.Module):
    """A CIFAR wide (ISO/MIMO) ResNet with binding, bundling and an unbinding head."""

    def __init__(
        self, layers: Sequence[int], num_classes: int, in_channels: int = 3, width: int = 10,
        initial_width: int = 1, activation: str = "relu", isometric: bool = False,
        binding: str = "None", capacity: int = 1, relu_parameter_init: Optional[float] = None,
        skip_init: bool = False, dirac_init: bool = False, batch_norm_disabled: bool = False,
        trainable_keys: bool = True, legacy_iso_init: bool = False,
    ):
        super().__init__()
        kind = ACTIVATIONS.get(activation)
        if relu_parameter_init is not None and kind.default_init is None:
            raise ConfigError(f"mimo.relu_parameter_init={relu_parameter_init} has no effect: "
                              f"the blocks use a plain ReLU (allowed only for WideISONet and MIMONet)")
        if dirac_init and not isometric:
            raise ConfigError("mimo.dirac_init=true applies only to the ISO nets (WideISOReLUNet, WideISONet, MIMONet)")
        init = kind.default_init if relu_parameter_init is None else float(relu_parameter_init)
        norm = no_norm if batch_norm_disabled else nn.BatchNorm2d

        self.capacity = int(capacity)
        self.superposition = self.capacity
        self.isometric = isometric
        self.skip_init = skip_init
        stem_channels = 16 * initial_width
        features = 64 * width

        self.conv1 = nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False)
        self.bn1 = norm(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.binding = BINDINGS.get(binding)(self.capacity, stem_channels, trainable=trainable_keys)
        blocks: List[WideBlock] = []
        stages = []
        channels = stem_channels
        for stage, (depth, stride) in enumerate(zip(layers, (1, 2, 2))):
            planes = 16 * width * 2 ** stage
            stage_blocks = [
                WideBlock(channels if i == 0 else planes, planes, stride if i == 0 else 1, norm,
                          lambda c: kind.build(c, init), skip_init)
                for i in range(depth)
            ]
            blocks += stage_blocks
            stages.append(nn.Sequential(*stage_blocks))
            channels = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.unbind = None
        if binding != "None" or self.capacity > 1:
            self.unbind = nn.Conv2d(features, self.capacity * features, 1, bias=True)
        self.fc = nn.Linear(features, num_classes)
        self._blocks = blocks

        self._init_weights(activation, dirac_init, legacy_iso_init)

    def _init_weights(self, activation: str, dirac_init: bool, legacy_iso_init: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if not self.isometric:
            return
        slope = ISO_INIT_SLOPE.get(activation)
        for conv in self.isometric_convs():
            if dirac_init:
                nn.init.dirac_(conv.weight)
            elif slope is not None and not legacy_iso_init:
                nn.init.kaiming_normal_(conv.weight, a=slope, mode="fan_out", nonlinearity="leaky_relu")

    # ---- superposition ---------------------------------------------------------------
    def allowed_superpositions(self) -> List[int]:
        return [n for n in range(1, self.capacity + 1) if self.capacity % n == 0]

    def set_superposition(self, n: int) -> None:
        """Bundle ``n`` images per forward from now on; ``n`` must divide the capacity."""
        if int(n) != n or self.capacity % int(n) != 0 or n < 1:
            raise ConfigError(f"superposition {n} does not divide the capacity {self.capacity}: "
                              f"allowed {self.allowed_superpositions()}")
        self.superposition = int(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> logits (B, classes). As the original, a batch that ``n`` does
        not divide is cut to a multiple of ``n`` (the last B mod n images get no logits)."""
        n = self.superposition
        kept = x.shape[0] - x.shape[0] % n
        x = x[:kept]
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.binding(x, n)  # (B/n, C, H, W)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)  # (B/n, F, 1, 1)
        features = self.fc.in_features
        if self.unbind is not None:
            x = F.relu(self.unbind(x))  # (B/n, N·F, 1, 1)
            x = x.reshape(kept // n, self.capacity // n, n, features).mean(dim=1)
        return self.fc(x.reshape(kept, features))

    # ---- regularisers and statistics -------------------------------------------------
    def isometric_convs(self) -> List[nn.Conv2d]:
        return [conv for block in self._blocks for conv in block.isometric_convs()]

    def binding_regularization(self) -> torch.Tensor:
        """The HRR key regulariser (0 for MBAT and None)."""
        return self.binding.regularization().to(self.fc.weight.device)

    def isometry_regularization(self) -> torch.Tensor:
        """ISONet's isometry penalty over the block and shortcut convs (0 for WideResNet).

        Accumulated in float64 as the original, returned as float32."""
        if not self.isometric:
            return torch.zeros((), device=self.fc.weight.device)
        return isometry_regularization(self.isometric_convs()).float()

    def activation_parameters(self) -> List[nn.Parameter]:
        """SReLU offsets and PReLU slopes (the original exempts them from weight decay)."""
        return [p for block in self._blocks for p in block.activation_parameters()]

    @torch.no_grad()
    def mean_relu_parameter(self) -> float:
        """Mean over every block activation of its mean parameter (0.0 for plain ReLU).

        The original averages ``relu1`` twice for SReLU blocks; this uses relu1 and relu2."""
        means = [p.mean() for p in self.activation_parameters()]
        return float(torch.stack(means).mean()) if means else 0.0

    @torch.no_grad()
    def mean_abs_alpha(self) -> Optional[float]:
        """Mean |alpha| of the SkipInit scales, or None when SkipInit is off."""
        if not self.skip_init:
            return None
        return float(torch.stack([b.alpha.abs() for b in self._blocks]).mean())
