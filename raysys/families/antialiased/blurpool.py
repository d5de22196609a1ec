"""BlurPool: low-pass filter, then subsample (Zhang, "Making Convolutional Networks
Shift-Invariant Again", ICML 2019).

A ``BlurPool(channels, stride=s, filt_size=f)`` convolves every channel with the
normalised outer product of the binomial row of length ``f`` (Pascal's triangle:
1 -> [1], 4 -> [1, 3, 3, 1], 7 -> [1, 6, 15, 20, 15, 6, 1]) and keeps every s-th
pixel. ``f = 1`` is plain subsampling ``x[:, :, ::s, ::s]``. The map is padded by
``(f - 1) // 2`` on the left/top and ``ceil((f - 1) / 2)`` on the right/bottom
(plus ``pad_off``), with ``reflect`` (the original's default), ``replicate`` or
``zero`` padding, so the output side is ``ceil(n / s)`` for ``pad_off = 0``.

Small maps (original issue #47): reflection needs every pad to be smaller than
the side it pads, so e.g. a 2x2 map with ``f >= 4`` crashed the original
(``ReflectionPad2d``). Here a side that is too small to reflect is padded by
replication instead; the other side keeps reflection. Where reflection is
possible the result is the original's (the taps are integers and their sum a
power of two, so the normalised float32 filter is exact).

The filter is a non-persistent buffer: it follows ``.to()``/``.half()`` and DDP,
but is not in ``state_dict()``, so a model with BlurPool layers has the same
state_dict keys (and parameter count) as the model without them.
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

MAX_FILTER_SIZE = 7

# Pad type -> F.pad mode. "refl"/"repl" are the original's short spellings.
PAD_MODES: Dict[str, str] = {
    "reflect": "reflect",
    "refl": "reflect",
    "replicate": "replicate",
    "repl": "replicate",
    "zero": "constant",
}


def binomial_taps(filt_size: int) -> torch.Tensor:
    """Row ``filt_size - 1`` of Pascal's triangle, unnormalised, as float64."""
    if not 1 <= filt_size <= MAX_FILTER_SIZE:
        raise ValueError(f"BlurPool filter size must be 1..{MAX_FILTER_SIZE}, got {filt_size}")
    return torch.tensor([math.comb(filt_size - 1, k) for k in range(filt_size)], dtype=torch.float64)


def blur_kernel(filt_size: int) -> torch.Tensor:
    """The 2-D filter: outer product of the binomial taps, summing to 1 (float32)."""
    taps = binomial_taps(filt_size)
    kernel = torch.outer(taps, taps)
    return (kernel / kernel.sum()).to(torch.float32)


def pad_sizes(filt_size: int, pad_off: int = 0) -> Tuple[int, int, int, int]:
    """(left, right, top, bottom) padding of a BlurPool, as for ``F.pad``."""
    before = (filt_size - 1) // 2 + pad_off
    after = filt_size // 2 + pad_off  # == ceil((filt_size - 1) / 2) + pad_off
    return (before, after, before, after)


class BlurPool(nn.Module):
    """Anti-aliased downsampling of a (N, C, H, W) map: pad, blur each channel, subsample."""

    def __init__(self, channels: int, pad_type: str = "reflect", filt_size: int = 4, stride: int = 2, pad_off: int = 0):
        super().__init__()
        if pad_type not in PAD_MODES:
            raise ValueError(f"BlurPool pad_type must be one of {sorted(PAD_MODES)}, got {pad_type!r}")
        if stride < 1:
            raise ValueError(f"BlurPool stride must be >= 1, got {stride}")
        if pad_off < 0:
            raise ValueError(f"BlurPool pad_off must be >= 0, got {pad_off}")
        self.channels = channels
        self.pad_type = pad_type
        self.filt_size = filt_size
        self.stride = stride
        self.pad_off = pad_off
        self.pad = pad_sizes(filt_size, pad_off)
        self._mode = PAD_MODES[pad_type]
        kernel = blur_kernel(filt_size)
        self.register_buffer("filt", kernel.expand(channels, 1, filt_size, filt_size).contiguous(), persistent=False)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if not any(self.pad):
            return x
        if self._mode == "constant":
            return F.pad(x, self.pad, mode="constant", value=0.0)
        if self._mode == "reflect":
            left, right, top, bottom = self.pad
            height, width = x.shape[-2:]
            fits_w = max(left, right) < width
            fits_h = max(top, bottom) < height
            if not (fits_w and fits_h):
                # Too small to reflect (issue #47): replicate along that axis only.
                x = F.pad(x, (left, right, 0, 0), mode="reflect" if fits_w else "replicate")
                return F.pad(x, (0, 0, top, bottom), mode="reflect" if fits_h else "replicate")
        return F.pad(x, self.pad, mode=self._mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            raise ValueError(f"BlurPool expects {self.channels} channels, got input of shape {tuple(x.shape)}")
        if self.filt_size == 1:
            return self._pad(x)[:, :, :: self.stride, :: self.stride]
        filt = self.filt if self.filt.dtype == x.dtype else self.filt.to(x.dtype)
        return F.conv2d(self._pad(x), filt, stride=self.stride, groups=self.channels)

    def summary_info(self) -> dict:
        return {"blur": f"f{self.filt_size} s{self.stride} {self.pad_type}"}

    def extra_repr(self) -> str:
        extra = f", pad_off={self.pad_off}" if self.pad_off else ""
        return f"{self.channels}, filt_size={self.filt_size}, stride={self.stride}, pad_type={self.pad_type!r}{extra}"


class BlurConv2d(nn.Conv2d):
    """A Conv2d that blurs and subsamples its input first: ``conv(BlurPool(x))``.

    It is a ``Conv2d`` with the same parameters, so its state_dict keys are the
    conv's (``weight``, ``bias``) and a conv can be swapped for one in place
    (:meth:`from_conv`) without changing a model's state_dict.
    """

    def __init__(self, *args, blur_stride: int = 2, filt_size: int = 4, pad_type: str = "reflect", **kwargs):
        super().__init__(*args, **kwargs)
        self.blur = BlurPool(self.in_channels, pad_type=pad_type, filt_size=filt_size, stride=blur_stride)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, blur_stride: int = 2, filt_size: int = 4, pad_type: str = "reflect") -> "BlurConv2d":
        """A BlurConv2d that shares ``conv``'s parameters (no copy, no re-init)."""
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
            padding_mode=conv.padding_mode, blur_stride=blur_stride, filt_size=filt_size,
            pad_type=pad_type, device="meta",
        )
        new.weight = conv.weight
        new.bias = conv.bias
        new.blur.to(conv.weight.device)
        return new.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.blur(x))

    def summary_info(self) -> dict:
        return {}
