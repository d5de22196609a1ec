"""Binding and bundling for computation in superposition (MIMOConv).

N images' feature maps ``x_1..x_N`` (C channels each) are bound, position-wise, with
N keys and summed into one map: ``s = sum_n B_n x_n``, each ``B_n`` a C x C linear map
applied to the channel vector of every pixel.

- ``HRR``: ``B_n`` is a circulant matrix, i.e. a circular correlation through the
  channels with a learned key ``k_n`` in R^C (keys start U(+-1/sqrt C), as PyTorch's
  Conv1d default the original relies on). The original computes it as a grouped Conv1d
  with circular padding C//2 whose output index 0 is dropped; that is the circular
  correlation ``y[j] = sum_m k_n[(m + C/2 - 1) mod C] x[(j + m) mod C]``, which we build
  as an explicit circulant matrix (same math, tested equal to the original's form).
- ``MBAT``: ``B_n`` is a dense learned C x C matrix (Kaiming normal, fan_out, as the
  original's grouped 1x1 Conv2d).
- ``None``: ``B_n`` is the identity (plain summation).

When fewer images than the capacity are bundled (n' dividing N), the original repeats
the n' images N/n' times so every key is used; ``forward(x, n')`` does the same by summing the
maps of the repeated slots, which is exact and cheaper. Bind and bundle are fused into
one 1x1 convolution from n'·C to C channels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from raysys.errors import ConfigError
from raysys.registry import Registry

BINDINGS: Registry[type] = Registry("binding", config_key="superposition.binding")


class Binding(nn.Module):
    """Base: per-slot channel maps ``B_n`` (N, C, C) and the fused bind + bundle."""

    def __init__(self, capacity: int, channels: int):
        super().__init__()
        if capacity < 1:
            raise ConfigError(f"superposition.capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.channels = channels

    def matrices(self) -> torch.Tensor:
        """The N binding maps, shape (N, C, C); ``out = B_n @ x`` per pixel."""
        raise NotImplementedError

    def bind(self, x: torch.Tensor) -> torch.Tensor:
        """Bind each slot: x (B', N, C, H, W) -> (B', N, C, H, W)."""
        return torch.einsum("ndc,bnchw->bndhw", self.matrices().to(x.dtype), x)

    def bundle_weight(self, n: int) -> torch.Tensor:
        """The fused bind + bundle as a 1x1 conv weight (C, n·C, 1, 1) for n images."""
        maps = self.matrices()  # (N, C, C): slot k = r * n + i binds image i
        maps = maps.reshape(self.capacity // n, n, self.channels, self.channels).sum(0)
        return maps.permute(1, 0, 2).reshape(self.channels, n * self.channels, 1, 1)

    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Bind n images per group and sum (bundle): x (B, C, H, W) -> (B/n, C, H, W)."""
        b, c, h, w = x.shape
        grouped = x.reshape(b // n, n * c, h, w).contiguous(memory_format=_memory_format(x))
        return F.conv2d(grouped, self.bundle_weight(n).to(x.dtype))

    def regularization(self) -> torch.Tensor:
        """Key regulariser added to the loss (0 unless HRR)."""
        return self._zero()

    def _zero(self) -> torch.Tensor:
        p = next(self.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)


@BINDINGS.register("None")
class NoBinding(Binding):
    """Superposition by plain summation (the original's ``binding_type="None"``)."""

    def __init__(self, capacity: int, channels: int, trainable: bool = True):
        super().__init__(capacity, channels)

    def matrices(self) -> torch.Tensor:
        eye = torch.eye(self.channels)
        return eye.expand(self.capacity, -1, -1)

    def bind(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b, c, h, w = x.shape
        # the original repeats the n images N/n times before summing
        summed = x.reshape(b // n, n, c, h, w).sum(1) * (self.capacity // n)
        return summed.contiguous(memory_format=_memory_format(x))


@BINDINGS.register("HRR")
class HRRBinding(Binding):
    """Holographic reduced representations: circular correlation through the channels."""

    def __init__(self, capacity: int, channels: int, trainable: bool = True):
        super().__init__(capacity, channels)
        if channels % 2:
            raise ConfigError(f"HRR binding needs an even channel count, got {channels}")
        bound = 1.0 / math.sqrt(channels)
        self.keys = nn.Parameter(torch.empty(capacity, channels).uniform_(-bound, bound), requires_grad=trainable)

    def matrices(self) -> torch.Tensor:
        # circulant[j, i] = key[(i - j + C/2 - 1) mod C]: the original's padded conv1d
        j = torch.arange(self.channels, device=self.keys.device)
        index = (j[None, :] - j[:, None] + self.channels // 2 - 1) % self.channels
        return self.keys[:, index]

    def effective_keys(self) -> torch.Tensor:
        """Keys ``a_n`` such that slot n computes ``y[j] = sum_m a_n[m] x[j + m]``."""
        return torch.roll(self.keys, -(self.channels // 2 - 1), dims=1)

    def regularization(self) -> torch.Tensor:
        """Mean squared cosine over key pairs plus mean squared deviation of norms from 1."""
        return hrr_key_regularization(self.keys)


@BINDINGS.register("MBAT")
class MBATBinding(Binding):
    """Multiply-add-permute-like binding: one dense learned C x C matrix per slot."""

    def __init__(self, capacity: int, channels: int, trainable: bool = True):
        super().__init__(capacity, channels)
        # Kaiming normal with fan_out = N * C, as the original's grouped 1x1 Conv2d
        std = math.sqrt(2.0 / (capacity * channels))
        self.weight = nn.Parameter(torch.randn(capacity, channels, channels) * std, requires_grad=trainable)

    def matrices(self) -> torch.Tensor:
        return self.weight


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """Keep the body in channels_last when the stem ran in it (reshapes would drop it)."""
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def hrr_key_regularization(keys: torch.Tensor) -> torch.Tensor:
    """``||triu(K̂K̂ᵀ, 1)||²_F / (N(N-1)/2) + ||(||k_n|| - 1)_n||² / N`` for keys (N, C)."""
    n = keys.shape[0]
    with torch.autocast(keys.device.type, enabled=False):  # full precision under AMP
        norms = keys.norm(dim=1)
        penalty = (norms - 1).pow(2).sum() / n
        if n > 1:
            unit = F.normalize(keys, p=2, dim=1)
            cosines = torch.triu(unit @ unit.T, diagonal=1)
            penalty = penalty + cosines.pow(2).sum() / (n * (n - 1) / 2)
    return penalty


def circular_correlate(x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """``y[j] = sum_m key[m] x[(j + m) mod C]`` along the last axis (via FFT)."""
    spectrum = torch.fft.rfft(x, dim=-1) * torch.fft.rfft(key, dim=-1).conj()
    return torch.fft.irfft(spectrum, n=x.shape[-1], dim=-1)


def circular_convolve(x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """``y[j] = sum_m key[m] x[(j - m) mod C]`` along the last axis: the inverse of
    :func:`circular_correlate` for a unitary key (|FFT| = 1), HRR's approximate
    inverse (the involution) otherwise."""
    spectrum = torch.fft.rfft(x, dim=-1) * torch.fft.rfft(key, dim=-1)
    return torch.fft.irfft(spectrum, n=x.shape[-1], dim=-1)
