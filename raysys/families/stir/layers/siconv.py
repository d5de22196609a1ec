"""Scale-invariant convolution (SiConv2d) and the pooling that removes its scale axis.

``SiConv2d`` keeps one k×k weight and applies it at the sizes k, k+2, ...,
k+2(S-1): each enlarged kernel comes from :class:`KernelResize` (interpolation
and a k²/size² gain so responses stay comparable), each scale is a valid
convolution zero-padded back to the size of the smallest one, and the scales
are stacked on axis 2: (B, C, H, W) -> (B, C', S, H-k+1, W-k+1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from raysys.errors import ConfigError, one_of

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
POOL_MODES = ("pixel", "slice", "energy")


def area_matrix(size: int, target: int) -> torch.Tensor:
    """(target, size) 1-D area-resampling matrix for enlarging ``size`` -> ``target``.

    Output cell i covers [i·size, (i+1)·size) in units where an input cell is
    ``target`` wide; its weight on each input cell is the overlap fraction.
    """
    if target < size:
        raise ConfigError(f"area kernel interpolation only enlarges kernels ({size} -> {target} requested)")
    matrix = torch.zeros(target, size)
    for i in range(target):
        first = (i * size) // target
        spill = max(0, (i + 1) * size - (first + 1) * target)
        matrix[i, first] = 1.0 - spill / size
        if spill:
            matrix[i, first + 1] = spill / size
    return matrix


class KernelResize(nn.Module):
    """Resize (out, in, k, k) kernels to (out, in, t, t), scaled by k²/t²."""

    def __init__(self, kernel_size: int, target_size: int, mode: str = "bicubic"):
        super().__init__()
        if mode not in INTERPOLATIONS:
            raise ConfigError(f"kernel interpolation: {one_of(mode, INTERPOLATIONS)}")
        self.kernel_size, self.target_size, self.mode = kernel_size, target_size, mode
        if mode == "area":
            self.register_buffer("matrix", area_matrix(kernel_size, target_size), persistent=False)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.mode == "area":
            matrix = self.matrix.to(weight.dtype)
            resized = matrix @ weight @ matrix.T  # separable: rows, then columns
        else:
            resized = F.interpolate(weight, size=(self.target_size, self.target_size), mode=self.mode)
        return resized * (self.kernel_size**2 / self.target_size**2)

    def extra_repr(self) -> str:
        return f"{self.kernel_size} -> {self.target_size}, mode={self.mode}"


def num_scales_for(size: int, kernel_size: int) -> int:
    """Scales a SiConv2d needs so its largest kernel covers a ``size``-pixel input."""
    return (size - kernel_size) // 2 + 1


class SiConv2d(nn.Module):
    """Scale-invariant convolution: one shared k×k kernel at ``num_scales`` sizes.

    Parameters are ``weights`` and ``bias``, the original's state_dict keys.
    Output (B, out, S, H-k+1, W-k+1); the response of scale i is valid only
    inside its (H-k-2i+1)² centre and zero outside. ``padding=True`` instead
    same-pads every scale (the original's option).
    """

    def __init__(self, in_channels: int, out_channels: int, num_scales: int, kernel_size: int,
                 interpolation: str = "bicubic", padding: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_scales, self.kernel_size, self.padding = num_scales, kernel_size, padding
        self.weights = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        nn.init.uniform_(self.weights, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        self.resize = nn.ModuleList(
            KernelResize(kernel_size, kernel_size + 2 * i, interpolation) for i in range(num_scales)
        )

    def kernels(self):
        """The kernel of every scale, smallest first."""
        return [resize(self.weights) for resize in self.resize]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        expected = num_scales_for(min(height, width), self.kernel_size)
        if expected != self.num_scales:
            raise ValueError(f"SiConv2d with {self.num_scales} scales got a {height}x{width} input "
                             f"(needs {expected} scales)")
        outputs = []
        for i, kernel in enumerate(self.kernels()):
            if self.padding:
                outputs.append(F.conv2d(x, kernel, self.bias, padding=kernel.shape[-1] // 2))
            else:
                outputs.append(F.pad(F.conv2d(x, kernel, self.bias), (i, i, i, i)))
        return torch.stack(outputs, dim=2)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, scales={self.num_scales}, "
                f"kernel_size={self.kernel_size}, padding={self.padding}")


class ScalePool(nn.Module):
    """(B, C, S, H, W) -> (B, C, H, W) by a max over scales; the chosen scales stay in ``.indices``.

    - ``pixel``: each pixel takes its own best scale; indices (B, C, H, W).
    - ``slice``: each channel takes the scale slice holding its global maximum; indices (B, C).
    - ``energy``: each channel takes the slice with the largest spatial sum; indices (B, C).
    """

    def __init__(self, mode: str = "pixel"):
        super().__init__()
        if mode not in POOL_MODES:
            raise ConfigError(f"scale pool mode: {one_of(mode, POOL_MODES)}")
        self.mode = mode
        self.indices: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "pixel":
            pooled, indices = x.max(dim=2)
            self.indices = indices.detach()
            return pooled
        if self.mode == "slice":
            indices = x.flatten(2).argmax(dim=2) // (x.shape[-2] * x.shape[-1])
        else:
            indices = x.sum(dim=(-2, -1)).argmax(dim=2)
        self.indices = indices.detach()
        index = indices[:, :, None, None, None].expand(-1, -1, 1, *x.shape[-2:])
        return x.gather(2, index).squeeze(2)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


class GlobalMaxPool(nn.Module):
    """(B, C, *dims) -> (B, C): the maximum over every axis after the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).amax(dim=2)
