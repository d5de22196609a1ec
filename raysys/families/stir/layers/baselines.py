"""Scale baselines of the STIR paper, in plain torch (no kornia).

- :class:`XuConv2d` (Xu et al. 2014, as in the SESN code): one kernel,
  zero-padded to the largest size and resampled to several sizes (nearest
  when enlarging, bilinear with aligned corners when shrinking), each
  rescaled to the padded kernel's L1 norm; the columns share weights and run
  as conv groups.
- :class:`KanazawaConv2d` (Kanazawa et al. 2014): the input is resampled by
  each scale factor, convolved, resampled back, centre-padded/cropped and
  max-pooled over the scales.
- :func:`gaussian_pyramid`: kornia's ``build_pyramid`` (5×5 binomial blur
  with reflect padding, then bilinear halving) for the ensemble model.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def centre_fit(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Zero-pad or crop the last two axes of ``x`` around the centre to (height, width)."""
    h, w = x.shape[-2:]
    left, top = (width - w) // 2, (height - h) // 2
    return F.pad(x, (left, width - w - left, top, height - h - top))


class XuConv2d(nn.Conv2d):
    """Multi-column conv with one shared kernel at ``kernel_sizes`` (no bias).

    Output channels are ``len(kernel_sizes) * out_channels`` (column-major:
    column c holds channels c·out .. (c+1)·out-1). A non-initial layer takes
    that many input channels and convolves each column with its own kernel
    size (``groups = len(kernel_sizes)``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 kernel_sizes: Sequence[int] = (3, 5, 7, 9, 11), initial: bool = False):
        self.kernel_sizes = list(kernel_sizes)
        self.max_kernel_size = max(self.kernel_sizes)
        self.columns = 1 if initial else len(self.kernel_sizes)
        super().__init__(in_channels, out_channels, kernel_size, padding=self.max_kernel_size // 2, bias=False)

    def _resample(self, kernel: torch.Tensor, size: int) -> torch.Tensor:
        # Same rule as the SESN code: compared against the trainable size k, but
        # applied to the kernel already padded to the largest size.
        if size == self.kernel_size[0]:
            return kernel
        if size > self.kernel_size[0]:
            resized = F.interpolate(kernel, size=(size, size), mode="nearest")
        else:
            resized = F.interpolate(kernel, size=(size, size), mode="bilinear", align_corners=True)
        return centre_fit(resized, *kernel.shape[-2:])

    def column_kernels(self) -> torch.Tensor:
        """(columns·out, in, K, K): the kernel of every column, L1-matched to the padded kernel."""
        pad = (self.max_kernel_size - self.kernel_size[0]) // 2
        kernel = F.pad(self.weight, (pad, pad, pad, pad))
        norm = kernel.abs().sum(dim=(2, 3), keepdim=True)
        scaled = []
        for size in self.kernel_sizes:
            resized = self._resample(kernel, size)
            scaled.append(resized * norm / resized.abs().sum(dim=(2, 3), keepdim=True))
        return torch.cat(scaled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.column_kernels(), stride=self.stride, padding=self.padding, groups=self.columns)


class KanazawaConv2d(nn.Conv2d):
    """Locally scale-invariant conv: max over input rescalings by ``scales`` (valid padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, scales: Sequence[float] = (1.0,)):
        super().__init__(in_channels, out_channels, kernel_size)
        self.scales = list(scales)

    @staticmethod
    def _rescale(x: torch.Tensor, scale: float) -> torch.Tensor:
        if scale == 1:
            return x
        resized = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=True)
        return centre_fit(resized, *x.shape[-2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stack = torch.cat([self._rescale(x, s) for s in self.scales])  # (S·B, C, H, W)
        responses = super().forward(stack).chunk(len(self.scales))
        back = [self._rescale(r, 1 / s) for r, s in zip(responses, self.scales)]
        return torch.stack(back).amax(dim=0)


def _binomial_kernel(channels: int, dtype, device) -> torch.Tensor:
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=dtype, device=device)
    kernel = torch.outer(taps, taps) / 256.0
    return kernel.expand(channels, 1, 5, 5)


def pyramid_down(x: torch.Tensor) -> torch.Tensor:
    """Blur with the 5×5 binomial (reflect padding), then halve bilinearly."""
    channels = x.shape[1]
    blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), _binomial_kernel(channels, x.dtype, x.device),
                       groups=channels)
    height, width = x.shape[-2:]
    return F.interpolate(blurred, size=(height // 2, width // 2), mode="bilinear", align_corners=False)


def gaussian_pyramid(x: torch.Tensor, levels: int = 3) -> List[torch.Tensor]:
    """[x, down(x), down(down(x)), ...]: ``levels`` images, as kornia's build_pyramid(max_level=levels)."""
    pyramid = [x]
    for _ in range(levels - 1):
        pyramid.append(pyramid_down(pyramid[-1]))
    return pyramid
