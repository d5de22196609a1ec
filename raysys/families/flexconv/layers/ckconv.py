"""Continuous kernel convolutions: CKConv (no mask) and FlexConv (learnable Gaussian mask).

CKConv (Romero et al. 2022a) samples a kernel generator (:mod:`raysys.families.flexconv.layers.kernels`) on a
grid of relative positions ``linspace(-1, 1, n)`` per axis and convolves with it ("same"
padding, stride 1). ``horizon`` sets ``n``: an odd integer, or ``"same"`` (the input
width, fixed at the first forward and kept in the persistent ``train_length`` buffer).

FlexConv (Romero, Bruintjes et al. 2022) multiplies the kernel by a separable Gaussian
mask ``exp(-1/2 ((y - mu_y)/sigma_y)^2) * exp(-1/2 ((x - mu_x)/sigma_x)^2)``;
``mask_params`` is ``[[mu_y, sigma_y], [mu_x, sigma_x]]``, initialised to
``[[0, init_value], [0, init_value]]``. With dynamic cropping the grid is cut, without
gradients, to the positions where the mask can exceed ``threshold``: ``|p| < |mu| +
|sigma| sqrt(-2 ln threshold)`` (2.146 sigma for 0.1), per axis, symmetrically, so the
kernel (and the cost of the convolution) grows as sigma is learned.
A Gaussian mask sets the generator's ``init_spatial_value`` to ``1.667 * init_value``.
``temperature`` is stored (a buffer) but, as in the original, only a sigmoid mask would
use it, and that mask is not implemented there either.

The convolution goes through :func:`raysys.families.flexconv.layers.fftconv.conv2d_same` (FFT for large
kernels). Both layers define ``summary_info()`` (their current kernel size) and
``compute_kernel()``; the last kernel of a forward is ``last_kernel`` (used by the
FlexConv recipe's kernel L2 loss). Names of parameters and buffers follow the original.
Torch only.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from raysys.families.flexconv.layers.fftconv import DEFAULT_FFT_MIN_KERNEL, FftMode, conv2d_same, parse_use_fft
from raysys.families.flexconv.layers.kernels import build_kernel_net

Horizon = Union[int, str]
# A Gaussian mask's generator is initialised on a region this much wider than sigma.
GAUSSIAN_INIT_SPATIAL_FACTOR = 1.667


def parse_horizon(horizon: Horizon) -> Horizon:
    """``"same"`` or an odd positive int (a numeric string is converted)."""
    if isinstance(horizon, str):
        text = horizon.strip()
        if text.lower() == "same":
            return "same"
        try:
            horizon = int(text)
        except ValueError:
            raise ValueError(f"flexconv.conv.horizon must be 'same' or an odd integer, got {horizon!r}") from None
    if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 1 or horizon % 2 == 0:
        raise ValueError(f"flexconv.conv.horizon must be 'same' or an odd integer, got {horizon!r}")
    return int(horizon)


def rel_positions_grid(sizes: Sequence[int], device=None, dtype=None) -> torch.Tensor:
    """``(1, len(sizes), *sizes)``: channel d holds ``linspace(-1, 1, sizes[d])`` along axis d."""
    axes = [torch.linspace(-1.0, 1.0, int(n), device=device, dtype=dtype) for n in sizes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0).unsqueeze(0)


def gaussian_1d(x: torch.Tensor, mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * ((x - mean) / sigma) ** 2)


def gaussian_mask_2d(grid: torch.Tensor, mask_params: torch.Tensor) -> torch.Tensor:
    """The separable mask on ``grid`` (1, 2, h, w): row 0 of ``mask_params`` is y, row 1 is x."""
    mask_y = gaussian_1d(grid[0, 0], mask_params[0, 0], mask_params[0, 1])
    mask_x = gaussian_1d(grid[0, 1], mask_params[1, 0], mask_params[1, 1])
    return mask_y * mask_x


def gaussian_extent(mean: float, sigma: float, threshold: float) -> float:
    """The largest ``|p|`` at which the Gaussian equals ``threshold``: ``|mu| + |sigma| sqrt(-2 ln thr)``."""
    return abs(mean) + abs(sigma) * math.sqrt(-2.0 * math.log(threshold))


def cropped_size(n: int, extent: float) -> int:
    """How many of ``linspace(-1, 1, n)`` survive a symmetric crop to ``|p| < extent``.

    As in the original, the cut is decided on the left half (positions ``<= -extent``
    go, and as many on the right) and no crop happens when ``extent >= 1``. Unlike the
    original (which fails for a zero extent), at least the centre is kept.
    """
    if extent >= 1.0 or n <= 1:
        return n
    left = torch.linspace(-1.0, 1.0, n)[: n // 2 + 1]
    dropped = int((left <= -extent).sum())
    return max(n - 2 * dropped, 1 if n % 2 else 2)


class _KernelCache:
    """Holds the last generated kernel; dropped on copy/pickle (it is a graph node)."""

    __slots__ = ("kernel",)

    def __init__(self):
        self.kernel: Optional[torch.Tensor] = None

    def __deepcopy__(self, memo):
        return _KernelCache()

    def __getstate__(self):
        return None

    def __setstate__(self, state):
        self.kernel = None


class CKConv(nn.Module):
    """Continuous kernel convolution (2D): ``conv(x, Kernel(grid).view(out, in, h, w) * sampling_rate_norm)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        horizon: Horizon = "same",
        kernel_type: str = "MAGNet",
        kernel_no_hidden: int = 32,
        kernel_no_layers: int = 3,
        kernel_omega_0: float = 0.0,
        kernel_learn_omega_0: bool = False,
        kernel_steerable: bool = False,
        kernel_init_spatial_value: float = 1.0,
        kernel_bias_init: Optional[str] = None,
        kernel_input_scale: float = 25.6,
        kernel_sampling_rate_norm: float = 1.0,
        conv_bias: bool = True,
        conv_use_fft: FftMode = "auto",
        fft_min_kernel: int = DEFAULT_FFT_MIN_KERNEL,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.horizon = parse_horizon(horizon)
        # The generator is defined on [-1, 1]: a larger init region is clipped.
        init_spatial = min(float(kernel_init_spatial_value), 1.0)
        self.Kernel = build_kernel_net(
            kernel_type, 2, out_channels * in_channels, kernel_no_hidden, kernel_no_layers,
            input_scale=kernel_input_scale, init_spatial_value=init_spatial, omega_0=kernel_omega_0,
            learn_omega_0=kernel_learn_omega_0, steerable=kernel_steerable, bias=conv_bias, bias_init=kernel_bias_init,
        )
        self.kernel_type = kernel_type
        self.bias = nn.Parameter(torch.zeros(out_channels)) if conv_bias else None
        self.kernel_sampling_rate_norm = float(kernel_sampling_rate_norm)
        self.use_fft = parse_use_fft(conv_use_fft)
        self.fft_min_kernel = int(fft_min_kernel)
        length = self.horizon if isinstance(self.horizon, int) else 0
        self.register_buffer("train_length", torch.tensor([length], dtype=torch.int32), persistent=True)
        self._cache = _KernelCache()

    # -- grid and kernel -------------------------------------------------------------
    def grid_length(self, x: Optional[torch.Tensor] = None) -> int:
        """The side of the full (uncropped) grid; ``"same"`` takes it from ``x`` once."""
        if int(self.train_length[0]) == 0:
            if x is None:
                raise RuntimeError("horizon='same': the grid size is set by the first forward")
            self.train_length[0] = int(x.shape[-1])
        return int(self.train_length[0])

    def kernel_size(self) -> Tuple[int, int]:
        """The size of the kernel the next forward uses (h, w); 0 if not known yet."""
        n = int(self.train_length[0])
        return (n, n)

    def positions(self, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        n = self.grid_length(x)
        ref = self.bias if self.bias is not None else next(self.parameters())
        return rel_positions_grid((n, n), device=ref.device, dtype=ref.dtype)

    def generate(self, grid: torch.Tensor) -> torch.Tensor:
        """The unmasked kernel on ``grid``: (out, in, h, w)."""
        kernel = self.Kernel(grid).view(self.out_channels, self.in_channels, *grid.shape[2:])
        return kernel * self.kernel_sampling_rate_norm

    def compute_kernel(self, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The kernel the convolution uses (with gradients)."""
        return self.generate(self.positions(x))

    @property
    def last_kernel(self) -> Optional[torch.Tensor]:
        """The kernel of the last forward (with its graph), for kernel regularisers."""
        return self._cache.kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.compute_kernel(x)
        self._cache.kernel = kernel
        return conv2d_same(x, kernel, self.bias, self.use_fft, self.fft_min_kernel)

    def summary_info(self) -> dict:
        h, w = self.kernel_size()
        return {"kernel_size": f"{h}x{w}" if h else str(self.horizon)}

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, horizon={self.horizon}, kernel={self.kernel_type}, "
                f"use_fft={self.use_fft}")


class FlexConv(CKConv):
    """CKConv times a learnable separable Gaussian mask, with dynamic cropping."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        horizon: Horizon = "same",
        *,
        mask_type: str = "gaussian",
        mask_init_value: float = 0.075,
        mask_temperature: float = 15.0,
        mask_dynamic_cropping: bool = True,
        mask_threshold: float = 0.1,
        mask_use: bool = True,
        **ckconv_kwargs,
    ):
        if mask_type != "gaussian":
            # The original's sigmoid mask raises NotImplementedError as well.
            raise NotImplementedError(f"mask type {mask_type!r}: only 'gaussian' is implemented")
        ckconv_kwargs["kernel_init_spatial_value"] = GAUSSIAN_INIT_SPATIAL_FACTOR * mask_init_value
        super().__init__(in_channels, out_channels, horizon, **ckconv_kwargs)
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"flexconv.mask.threshold must be in (0, 1), got {mask_threshold}")
        self.mask_params = nn.Parameter(torch.tensor([[0.0, mask_init_value], [0.0, mask_init_value]]))
        self.register_buffer("temperature", torch.full((1,), float(mask_temperature)), persistent=True)
        self.register_buffer("mask_threshold", torch.full((1,), float(mask_threshold)), persistent=True)
        self.mask_type = mask_type
        self.mask_dynamic_cropping = bool(mask_dynamic_cropping)
        self.mask = bool(mask_use)

    def kernel_size(self) -> Tuple[int, int]:
        n = int(self.train_length[0])
        if not n or not self.mask_dynamic_cropping:
            return (n, n)
        threshold = float(self.mask_threshold[0])
        with torch.no_grad():
            (mu_y, sigma_y), (mu_x, sigma_x) = self.mask_params.detach().cpu().tolist()
        return (cropped_size(n, gaussian_extent(mu_y, sigma_y, threshold)),
                cropped_size(n, gaussian_extent(mu_x, sigma_x, threshold)))

    def positions(self, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        n = self.grid_length(x)
        h, w = self.kernel_size()
        ref = self.mask_params
        grid = rel_positions_grid((n, n), device=ref.device, dtype=ref.dtype)
        top, left = (n - h) // 2, (n - w) // 2
        return grid[:, :, top:top + h, left:left + w]

    def compute_kernel(self, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        grid = self.positions(x)
        kernel = self.generate(grid)
        if self.mask:
            kernel = kernel * gaussian_mask_2d(grid, self.mask_params).view(1, 1, *grid.shape[2:])
        return kernel

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mask={self.mask_type}, cropping={self.mask_dynamic_cropping}"
