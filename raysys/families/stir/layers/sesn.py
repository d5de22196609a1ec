"""Scale-equivariant steerable convolutions (SESN) with Hermite or DISCO bases.

Both bases are built in memory by default (nothing is read from disk):

- **Hermite** (``hermite_b``, Sosnovik et al. 2020): at every scale σ of the
  basis, 49 = effective_size² separable functions G_τ(x)·He_a(x/τ) ·
  G_τ(y)·He_b(y/τ) (probabilists' Hermite polynomials, a + b ≤ max_order,
  Gaussian envelopes of widths τ = σ, σ/mult, σ/mult², ...), on a
  grid shrunk in proportion to σ/max(σ) and zero-padded to the kernel size.
- **DISCO** (``disco_b``, Sosnovik et al. 2021): a "proxy" basis of
  kernel_size² pixels per function and scale: at integer scales the dilated
  standard basis, at the other scales the kernels that make convolution and
  rescaling commute best. The original loads those from a precomputed ``.pt``
  (found via the working directory). Here they are computed: the DISCO
  objective ‖conv(resize(x)) − resize(conv(x))‖² over random inputs is
  linear in the unknown kernel when its partner in the pair is a fixed
  (integer-scale) kernel, so each non-integer scale is the least-squares fit
  against both integer scales (:func:`disco_proxy_basis`). The proxy is then
  mixed by the Hermite functions at ``basis_min_scale``, as in the original.
  :func:`load_proxy_basis` reads the original's file instead
  (``stir.disco_basis=PATH``).

Weights are (out, in[, scale_size], 49); kernels are ``weight @ basis``.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from raysys.errors import ConfigError

BASIS_TYPES = ("hermite_b", "disco_b")


def hermite_e(x: torch.Tensor, order: int) -> torch.Tensor:
    """Probabilists' Hermite polynomial He_order at ``x`` (three-term recurrence)."""
    previous, current = torch.ones_like(x), x
    if order == 0:
        return previous
    for n in range(1, order):
        previous, current = current, x * current - n * previous
    return current


def hermite_functions(size: int, base_scale: float, max_order: int, mult: float, num_funcs: int) -> torch.Tensor:
    """(num_funcs, size, size) Hermite-Gaussian functions with shrinking envelopes (float64)."""
    per_width = (max_order + 1) * (max_order + 2) // 2
    widths = [base_scale / mult**n for n in range(math.ceil(num_funcs / per_width))]
    grid = torch.linspace(-(size // 2), size // 2, size, dtype=torch.float64)
    orders = [(a, b) for a in range(max_order + 1) for b in range(max_order + 1) if a + b <= max_order]
    functions = []
    for width in widths:
        envelope = torch.exp(-grid**2 / (2 * width**2)) / width
        for order_y, order_x in orders:
            along_x = envelope * hermite_e(grid / width, order_x)
            along_y = envelope * hermite_e(grid / width, order_y)
            functions.append(torch.outer(along_x, along_y))
    return torch.stack(functions[:num_funcs])


def normalize_by_min_scale(basis: torch.Tensor) -> torch.Tensor:
    """Divide every function by its L2 norm at the first (smallest) scale."""
    return basis / basis[:, :1].pow(2).sum(dim=(2, 3), keepdim=True).sqrt()


def _pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    pad = (size - x.shape[-1]) // 2
    return F.pad(x, [pad] * 4)


def hermite_basis(size: int, scales: Sequence[float], effective_size: int, mult: float, max_order: int) -> torch.Tensor:
    """(effective_size², len(scales), size, size) Hermite basis ``hermite_b``."""
    per_scale = []
    for scale in scales:
        shrunk = int(size * scale / max(scales)) // 2 * 2 + 1
        functions = hermite_functions(shrunk, scale, max_order, mult, effective_size**2)
        per_scale.append(_pad_to(functions, size))
    return normalize_by_min_scale(torch.stack(per_scale, 1)).float()


def dilated_standard_basis(size: int, effective_size: int, dilation: int) -> torch.Tensor:
    """(effective_size², size, size): one-hot pixels on an effective_size² grid of step ``dilation``."""
    basis = torch.zeros(effective_size**2, size, size, dtype=torch.float64)
    offset = size // 2 - (effective_size // 2) * dilation
    for index in range(effective_size**2):
        row, col = divmod(index, effective_size)
        basis[index, offset + row * dilation, offset + col * dilation] = 1.0
    return basis


def _conv_same(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    pad = kernels.shape[-1] // 2
    return F.conv2d(F.pad(x, [pad] * 4, mode="circular"), kernels[:, None])


def _shrink(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=1 / factor, mode="bicubic", align_corners=False)


def _fit_pair_rows(images: torch.Tensor, size: int, fixed: torch.Tensor, ratio: float,
                   unknown_is_larger: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows (design, targets) of the DISCO loss for one scale pair with one kernel fixed.

    The loss compares resize-then-convolve with the smaller-scale kernel and
    convolve-then-resize with the larger-scale kernel; both sides are linear
    in the kernel, so the unknown kernel's side becomes a design matrix over
    its size² pixels and the fixed side the targets (one column per function).
    """
    pixels = torch.eye(size * size, dtype=images.dtype).view(-1, size, size)
    crop = size // 2 + 1
    if unknown_is_larger:
        design = _shrink(_conv_same(images, pixels), ratio)
        target = _conv_same(_shrink(images, ratio), fixed)
    else:
        design = _conv_same(_shrink(images, ratio), pixels)
        target = _shrink(_conv_same(images, fixed), ratio)
    design = design[..., crop:-crop, crop:-crop]
    target = target[..., crop:-crop, crop:-crop]
    design = design.permute(0, 2, 3, 1).reshape(-1, size * size)
    target = target.permute(0, 2, 3, 1).reshape(-1, fixed.shape[0])
    return design, target


@lru_cache(maxsize=8)
def disco_proxy_basis(size: int, scales: Tuple[float, ...], effective_size: int, samples: int = 4,
                      seed: int = 0) -> torch.Tensor:
    """(effective_size², len(scales), size, size) DISCO proxy basis (float64, deterministic)."""
    integer = {i: dilated_standard_basis(size, effective_size, int(s)) for i, s in enumerate(scales)
               if float(s).is_integer()}
    if not integer:
        raise ValueError(f"a DISCO basis needs at least one integer scale, got {list(scales)}")
    images = torch.randn(samples, 1, 64, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    per_scale: List[torch.Tensor] = []
    for j, scale in enumerate(scales):
        if j in integer:
            per_scale.append(integer[j])
            continue
        designs, targets = [], []
        for i, fixed in integer.items():
            larger = scale > scales[i]
            ratio = scale / scales[i] if larger else scales[i] / scale
            design, target = _fit_pair_rows(images, size, fixed, ratio, unknown_is_larger=larger)
            designs.append(design)
            targets.append(target)
        solution = torch.linalg.lstsq(torch.cat(designs), torch.cat(targets)).solution  # (size², funcs)
        per_scale.append(solution.T.reshape(-1, size, size))
    return torch.stack(per_scale, 1)


def load_proxy_basis(path: str, size: int, scales: Sequence[float], effective_size: int) -> torch.Tensor:
    """The original's precomputed DISCO proxy (``size=15_eff_size=7_scales=[...].pt``) as float64, shape-checked."""
    expected = (effective_size**2, len(scales), size, size)
    try:
        proxy = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"stir.disco_basis={path!r}: no such file (the original's "
                          f"siconvnet/contrib/size={size}_eff_size={effective_size}_scales=[...].pt)") from None
    except Exception as error:  # pickle or zip errors: not a tensor file
        raise ConfigError(f"stir.disco_basis={path!r}: not a torch tensor file ({type(error).__name__})") from None
    if not isinstance(proxy, torch.Tensor) or tuple(proxy.shape) != expected:
        shape = tuple(proxy.shape) if isinstance(proxy, torch.Tensor) else type(proxy).__name__
        raise ConfigError(f"stir.disco_basis={path!r}: holds {shape}, expected a tensor of shape {expected} "
                          f"(functions, scales {list(scales)}, {size}, {size})")
    return proxy.double()


def disco_basis(size: int, scales: Sequence[float], effective_size: int, mult: float, max_order: int,
                min_scale: float, proxy: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(effective_size², len(scales), size, size) DISCO basis ``disco_b`` from ``proxy`` (default: computed)."""
    if proxy is None:
        proxy = disco_proxy_basis(size, tuple(float(s) for s in scales), effective_size)
    mixing = hermite_functions(effective_size, min_scale, max_order, mult, effective_size**2)
    mixing = mixing.reshape(effective_size**2, -1)
    basis = (mixing @ proxy.reshape(effective_size**2, -1)).view(effective_size**2, len(scales), size, size)
    return normalize_by_min_scale(basis).float()


class SteerableBasis(nn.Module):
    """A fixed basis (funcs, S, size, size) turning (..., funcs) weights into (..., S, size, size) kernels.

    The basis is rebuilt from the config, so raysys checkpoints leave it out
    (a non-persistent buffer). The original saved it (``<conv>.basis.basis``):
    a state dict that holds it is loaded with that basis, so an original
    Hermite or DISCO checkpoint computes what it computed in the original.
    """

    def __init__(self, basis: torch.Tensor):
        super().__init__()
        self.num_funcs, self.num_scales, self.size = basis.shape[0], basis.shape[1], basis.shape[-1]
        self.register_buffer("basis", basis, persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        saved = state_dict.pop(prefix + "basis", None)
        if saved is not None:
            if saved.shape != self.basis.shape:
                error_msgs.append(f"size mismatch for {prefix}basis: the checkpoint's basis is {tuple(saved.shape)}, "
                                  f"this model's {tuple(self.basis.shape)}")
            else:
                with torch.no_grad():
                    self.basis.copy_(saved)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        kernel = weight @ self.basis.reshape(self.num_funcs, -1)
        return kernel.view(*weight.shape[:-1], self.num_scales, self.size, self.size)


def build_basis(basis_type: str, size: int, scales: Sequence[float], effective_size: int, *,
                mult: float, max_order: int, min_scale: float = 0.0,
                proxy: Optional[torch.Tensor] = None) -> SteerableBasis:
    """``proxy``: a DISCO proxy basis to use instead of the computed one (disco_b only)."""
    if basis_type == "hermite_b":
        return SteerableBasis(hermite_basis(size, scales, effective_size, mult, max_order))
    if basis_type == "disco_b":
        return SteerableBasis(disco_basis(size, scales, effective_size, mult, max_order, min_scale, proxy))
    raise ValueError(f"basis_type {basis_type!r} is not one of {list(BASIS_TYPES)}")


def _reset(weight: nn.Parameter, bias) -> None:
    nn.init.kaiming_uniform_(weight, a=5**0.5)
    if bias is not None:
        nn.init.zeros_(bias)


class SESConvZ2H(nn.Module):
    """Image -> scale group: (B, C, H, W) -> (B, C', S, H', W') (valid padding unless ``padding``)."""

    def __init__(self, in_channels: int, out_channels: int, basis: SteerableBasis, bias: bool = True,
                 padding: int = 0):
        super().__init__()
        self.in_channels, self.out_channels, self.padding = in_channels, out_channels, padding
        self.basis = basis
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, basis.num_funcs))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        _reset(self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.basis(self.weight).transpose(1, 2)  # (out, S, in, k, k)
        kernel = kernel.reshape(-1, self.in_channels, self.basis.size, self.basis.size)
        y = F.conv2d(F.pad(x, [self.padding] * 4), kernel)
        y = y.view(y.shape[0], self.out_channels, self.basis.num_scales, *y.shape[-2:])
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1, 1)


class SESConvHH(nn.Module):
    """Scale group -> scale group: (B, C, S, H, W) -> (B, C', S, H', W'), mixing ``scale_size`` scales."""

    def __init__(self, in_channels: int, out_channels: int, scale_size: int, basis: SteerableBasis,
                 bias: bool = True, padding: int = 0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scale_size, self.padding = scale_size, padding
        self.basis = basis
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, scale_size, basis.num_funcs))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        _reset(self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scales, size = self.basis.num_scales, self.basis.size
        kernel = self.basis(self.weight).permute(3, 0, 1, 2, 4, 5)  # (S, out, in, scale_size, k, k)
        kernel = kernel.reshape(-1, self.in_channels, self.scale_size, size, size)
        if self.scale_size > 1:
            x = F.pad(x, [0, 0, 0, 0, 0, self.scale_size - 1])
        output = 0.0
        for i in range(self.scale_size):
            window = x[:, :, i:i + scales].transpose(1, 2)  # (B, S, C, H, W)
            window = window.reshape(window.shape[0], -1, *window.shape[-2:])
            output = output + F.conv2d(F.pad(window, [self.padding] * 4), kernel[:, :, i], groups=scales)
        output = output.view(output.shape[0], scales, self.out_channels, *output.shape[-2:]).transpose(1, 2)
        return output if self.bias is None else output + self.bias.view(1, -1, 1, 1, 1)
