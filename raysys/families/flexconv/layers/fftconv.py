"""2D "same" cross-correlation, directly or through the FFT, with one selection rule.

:func:`fft_conv2d` computes exactly what ``F.conv2d(x, w, b, padding="same")`` computes
(cross-correlation, zero padding, stride 1; for an even kernel side the extra zero goes
on the far side, as in torch) with ``torch.fft.rfft2``/``irfft2``: both operands are
zero-padded to ``H + kh - 1`` by ``W + kw - 1`` so the circular correlation equals the
linear one, channels are mixed per frequency, and the first ``H x W`` outputs kept.

:func:`conv2d_same` picks the path: ``use_fft`` is ``"auto"`` (FFT when the smaller
kernel side is at least ``fft_min_kernel``), ``True``/``"true"`` (always FFT) or
``False``/``"false"`` (never). Torch only.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F

# Kernel side from which "auto" uses the FFT. Measured on CPU, float32, one thread,
# 16x36x32x32 inputs and 36 output channels (FlexNet widths): direct 41/80/194/906 ms,
# FFT 48/41/83/78 ms for 7/11/15/33-sided kernels, so the FFT wins from about 11.
# 15 leaves a margin for GPUs, where cuDNN's direct path is relatively faster.
DEFAULT_FFT_MIN_KERNEL = 15

FftMode = Union[bool, str]


def parse_use_fft(value: FftMode) -> str:
    """Normalise ``flexconv.conv.use_fft`` to "auto", "true" or "false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text in ("auto", ""):
        return "auto"
    if text in ("true", "yes", "1", "on", "fft"):
        return "true"
    if text in ("false", "no", "0", "off", "direct"):
        return "false"
    raise ValueError(f"flexconv.conv.use_fft must be auto, true or false, got {value!r}")


def fft_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding="same")`` through the FFT (groups=1)."""
    if x.dim() != 4 or weight.dim() != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"fft_conv2d needs x (N, C, H, W) and weight (O, C, kh, kw); got {tuple(x.shape)}, {tuple(weight.shape)}")
    height, width = x.shape[-2:]
    kh, kw = weight.shape[-2:]
    top, left = (kh - 1) // 2, (kw - 1) // 2
    size = (height + kh - 1, width + kw - 1)
    # x shifted so that x_p[m] = x[m - top]; then out[i] = sum_j x_p[i + j] w[j].
    x_pad = F.pad(x, (left, size[1] - width - left, top, size[0] - height - top))
    x_fr = torch.fft.rfft2(x_pad, s=size)
    w_fr = torch.fft.rfft2(weight, s=size)
    # Cross-correlation = product with the conjugate; channels mix per frequency: one batched
    # (N, C) @ (C, O) matmul per frequency. Contiguous operands matter: torch's complex batched
    # matmul (and einsum) on the permuted views is ~200x slower on CPU (bench flexconv).
    x_hw = x_fr.permute(2, 3, 0, 1).contiguous()
    w_hw = w_fr.conj().permute(2, 3, 1, 0).contiguous()
    out_fr = torch.matmul(x_hw, w_hw).permute(2, 3, 0, 1).contiguous()
    out = torch.fft.irfft2(out_fr, s=size)[..., :height, :width]
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out.to(x.dtype)


def direct_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The direct path: ``F.conv2d`` with "same" zero padding."""
    kh, kw = weight.shape[-2:]
    if kh % 2 and kw % 2:
        return F.conv2d(x, weight, bias, padding=((kh - 1) // 2, (kw - 1) // 2))
    return F.conv2d(x, weight, bias, padding="same")


def use_fft_for(kernel_size, use_fft: FftMode = "auto", fft_min_kernel: int = DEFAULT_FFT_MIN_KERNEL) -> bool:
    """Whether :func:`conv2d_same` takes the FFT path for a kernel of ``kernel_size`` (kh, kw)."""
    mode = parse_use_fft(use_fft)
    if mode != "auto":
        return mode == "true"
    return min(int(k) for k in kernel_size) >= fft_min_kernel


def conv2d_same(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
    use_fft: FftMode = "auto", fft_min_kernel: int = DEFAULT_FFT_MIN_KERNEL,
) -> torch.Tensor:
    """"Same" cross-correlation, through the FFT or directly (see the module docstring)."""
    if use_fft_for(weight.shape[-2:], use_fft, fft_min_kernel):
        return fft_conv2d(x, weight, bias)
    return direct_conv2d(x, weight, bias)
