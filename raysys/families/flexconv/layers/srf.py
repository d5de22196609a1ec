"""N-Jet / structured receptive fields (Pintea et al. 2021): a learned-scale Gaussian-derivative basis.

Our own implementation of the public N-JetNet math (the FlexConv repo imports a private
``srf`` package). With ``sigma = 2 ** scale`` (``scale`` learnable) and half-size
``s = ceil(init_k * sigma + 0.5)``, the 1D grid is ``x = -s..s``; the Gaussian
``g(x) ~ exp(-x^2 / (2 sigma^2))`` is normalised to sum 1, and its n-th derivative is
``(-1 / (sqrt(2) sigma))^n H_n(x / (sqrt(2) sigma)) g(x)`` (physicists' Hermite
polynomials), multiplied by ``sigma^n``. The 2D basis holds the products
``d_i(y) d_j(x)`` with ``i + j <= order`` (15 functions for order 4, ordered i = 0..order,
j = order - i .. 0). The filter is ``einsum("fck,fhw->kchw", alphas, basis)`` with
``alphas ~ N(0, 1)`` of shape (F, in, out); no bias. Torch only.
"""
from __future__ import annotations

import math
from typing import List

import torch
import torch.nn.functional as F
from torch import nn


def hermite(x: torch.Tensor, order: int) -> torch.Tensor:
    """Physicists' Hermite polynomial ``H_order(x)`` by the recurrence ``H_{n+1} = 2x H_n - 2n H_{n-1}``."""
    prev, cur = torch.ones_like(x), 2.0 * x
    if order == 0:
        return prev
    for n in range(1, order):
        prev, cur = cur, 2.0 * x * cur - 2.0 * n * prev
    return cur


def gaussian_derivatives_1d(x: torch.Tensor, sigma: torch.Tensor, order: int) -> List[torch.Tensor]:
    """``[sigma^n d^n g / dx^n for n = 0..order]`` on ``x``, ``g`` normalised to sum 1."""
    gauss = torch.exp(-(x * x) / (2.0 * sigma * sigma)) / (math.sqrt(2.0 * math.pi) * sigma)
    gauss = gauss / gauss.sum()
    u = x / (math.sqrt(2.0) * sigma)
    return [sigma ** n * (-1.0 / (math.sqrt(2.0) * sigma)) ** n * hermite(u, n) * gauss for n in range(order + 1)]


def gaussian_derivative_basis(x: torch.Tensor, sigma: torch.Tensor, order: int) -> torch.Tensor:
    """The separable 2D basis (F, len(x), len(x)), F = (order + 1)(order + 2) / 2."""
    d = gaussian_derivatives_1d(x, sigma, order)
    return torch.stack([torch.outer(d[i], d[j]) for i in range(order + 1) for j in range(order - i, -1, -1)])


class SRFConv2d(nn.Module):
    """An N-Jet convolution: a learned combination of Gaussian derivatives at a learned scale.

    ``init_k`` (2.0) sets the extent in sigmas, ``init_order`` (4) the highest derivative,
    ``init_scale`` (0.0, i.e. sigma = 1, a 7x7 filter) the initial log2 scale.
    """

    def __init__(
        self, in_channels: int, out_channels: int, init_k: float = 2.0, init_order: int = 4,
        init_scale: float = 0.0, learn_sigma: bool = True,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.init_k, self.order = float(init_k), int(init_order)
        n_basis = (self.order + 1) * (self.order + 2) // 2
        self.alphas = nn.Parameter(torch.randn(n_basis, in_channels, out_channels))
        self.scales = nn.Parameter(torch.full((1,), float(init_scale)), requires_grad=learn_sigma)

    @property
    def sigma(self) -> torch.Tensor:
        return 2.0 ** self.scales[0]

    def half_size(self) -> int:
        return int(math.ceil(self.init_k * float(self.sigma.detach()) + 0.5))

    def basis(self) -> torch.Tensor:
        s = self.half_size()
        x = torch.arange(-s, s + 1, device=self.alphas.device, dtype=self.alphas.dtype)
        return gaussian_derivative_basis(x, self.sigma, self.order)

    def compute_kernel(self) -> torch.Tensor:
        """The filter (out, in, 2s + 1, 2s + 1)."""
        return torch.einsum("fck,fhw->kchw", self.alphas, self.basis())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.compute_kernel()
        return F.conv2d(x, kernel, None, padding=kernel.shape[-1] // 2)

    def summary_info(self) -> dict:
        side = 2 * self.half_size() + 1
        return {"kernel_size": f"{side}x{side}"}

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, order={self.order}, init_k={self.init_k}"
