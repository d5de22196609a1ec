"""ISONet pieces (Qi et al., ICML 2020) as used by MIMOConv: SReLU and the isometry penalty."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn


class SReLU(nn.Module):
    """Shifted ReLU ``relu(x - b) + b`` with a learned per-channel offset ``b``."""

    def __init__(self, channels: int, init: float = -1.0):
        super().__init__()
        self.bias = nn.Parameter(torch.full((1, channels, 1, 1), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x - self.bias) + self.bias


def isometry_penalty(conv: nn.Conv2d) -> torch.Tensor:
    """``||W ⋆ W - δ I||²_F / 2``: how far ``conv`` is from an isometry.

    The kernel is transposed to its short side first (out > in), its Gram convolution
    taken at the conv's stride with full padding, and compared with the identity at
    the centre tap. Zero for an orthogonal (e.g. Dirac) conv.
    """
    weight = conv.weight
    if weight.shape[0] > weight.shape[1]:
        weight = weight.transpose(0, 1)
    kh, kw = weight.shape[-2:]
    with torch.autocast(weight.device.type, enabled=False):  # full precision under AMP
        gram = F.conv2d(weight, weight, padding=(kh - 1, kw - 1), stride=conv.stride)
    ch, cw = gram.shape[-2] // 2, gram.shape[-1] // 2
    target = torch.zeros_like(gram)
    target[:, :, ch, cw] = torch.eye(weight.shape[0], dtype=gram.dtype, device=gram.device)
    return (gram - target).pow(2).sum() / 2


def isometry_regularization(convs: Iterable[nn.Conv2d]) -> torch.Tensor:
    """Sum of :func:`isometry_penalty` over ``convs``, accumulated in float64 as the original."""
    total = None
    for conv in convs:
        term = isometry_penalty(conv).double()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros((), dtype=torch.float64)
