"""Continuous kernel generators: networks from relative positions to kernel values.

A generator maps a grid of relative positions, shape ``(1, dim, *sizes)`` with values
in [-1, 1], to ``(1, out_channels, *sizes)``. Every layer is a point-wise (1x1) conv,
so a generator can be sampled on any grid: the kernel is a continuous function.

- :class:`MAGNet` (Romero, Bruintjes et al. 2022): a multiplicative filter network
  whose filters are anisotropic Gabor functions; filter ``l`` of ``L + 1`` draws its
  Gaussian precisions from Gamma(alpha / (l + 1), beta).
- :class:`GaborNet` (MFN-Gabor, Fathony et al. 2021): the same with isotropic
  Gaussians and Gamma(alpha / (L + 1), beta) for every filter.
- :class:`SIREN` (Sitzmann et al. 2020): ``sin(omega_0 (W x + b))`` layers.

Parameter names follow the original implementation (``filters``, ``linear``,
``output_linear``, ``kernel_net``), so its state_dict keys are reproduced.
Torch only.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

# bias_init values that mean "keep the default Conv initialisation" (the original's
# config default is the YAML string "None").
_DEFAULT_BIAS_INIT = ("", "none", "null", "default")


def _bias_init_mode(bias_init: Optional[str]) -> str:
    mode = "" if bias_init is None else str(bias_init).strip().lower()
    if mode in _DEFAULT_BIAS_INIT:
        return "default"
    if mode not in ("zero", "uniform"):
        raise ValueError(f"kernel bias_init must be zero, uniform or None, got {bias_init!r}")
    return mode


def pointwise(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """A linear map applied at every position: a 1x1 Conv2d with torch's default init."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias)


class GaborFilter(nn.Module):
    """``g(x) = exp(-1/2 sum_d (gamma_d (x_d - mu_d))^2) * sin(W x + b)`` per hidden unit.

    ``gamma`` has shape (hidden, dim) when ``anisotropic`` (MAGNet), else (hidden, 1).
    Init: ``mu ~ U(-init_spatial_value, init_spatial_value)``, ``gamma ~ Gamma(alpha, beta)``,
    ``W`` = default 1x1-conv init times ``input_scale * gamma``, ``b ~ U(-pi, pi)``.
    ``steerable`` rotates the Gaussian by ``2 pi theta`` (MAGNet option, 2D only).
    """

    def __init__(
        self, dim: int, hidden: int, input_scale: float, alpha: float, beta: float,
        init_spatial_value: float, anisotropic: bool = True, steerable: bool = False, bias: bool = True,
    ):
        super().__init__()
        self.dim = dim
        self.linear = pointwise(dim, hidden, bias=bias)
        self.mu = nn.Parameter(init_spatial_value * (2 * torch.rand(hidden, dim) - 1))
        gamma_dims = dim if anisotropic else 1
        self.gamma = nn.Parameter(torch.distributions.Gamma(alpha, beta).sample((hidden, gamma_dims)))
        self.input_scale = input_scale
        with torch.no_grad():
            self.linear.weight.mul_(input_scale * self.gamma.view(hidden, gamma_dims, 1, 1))
            if self.linear.bias is not None:
                self.linear.bias.uniform_(-math.pi, math.pi)
        self.steerable = steerable
        if steerable:
            if dim != 2:
                raise ValueError("steerable Gabor filters need 2D positions")
            self.theta = nn.Parameter(torch.rand(hidden))

    def envelope(self, x: torch.Tensor) -> torch.Tensor:
        # x: (1, dim, *sizes) -> (1, hidden, *sizes)
        spatial = (1,) * (x.dim() - 2)
        diff = x.unsqueeze(1) - self.mu.view(1, *self.mu.shape, *spatial)  # (1, hidden, dim, ...)
        if self.steerable:
            angle = 2 * math.pi * self.theta
            cos, sin = torch.cos(angle), torch.sin(angle)
            rot = torch.stack([cos, sin, -sin, cos], dim=-1).view(-1, 2, 2)
            diff = torch.einsum("hoi,bhi...->bho...", rot, diff)
        scaled = self.gamma.view(1, *self.gamma.shape, *spatial) * diff
        return torch.exp(-0.5 * scaled.pow(2).sum(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.envelope(x) * torch.sin(self.linear(x))

    def summary_info(self) -> dict:
        # A row of its own in model summaries, so mu and gamma are counted in the table.
        return {}


class MFNBase(nn.Module):
    """Multiplicative filter network: ``h_0 = g_0(x)``, ``h_l = g_l(x) * (W_l h_{l-1} + b_l)``,
    output ``W_out h_L + b``. ``no_layers = L`` hidden linears, ``L + 1`` filters.

    The hidden ``W_l`` start U(+-sqrt(weight_scale / hidden)); biases and the output layer
    keep torch's default init unless ``bias_init`` is ``zero`` or ``uniform`` (U(-1, 1)).
    """

    filters: nn.ModuleList

    def __init__(self, hidden: int, out_channels: int, no_layers: int, weight_scale: float, bias: bool, bias_init):
        super().__init__()
        self.linear = nn.ModuleList([pointwise(hidden, hidden, bias) for _ in range(no_layers)])
        self.output_linear = pointwise(hidden, out_channels, bias)
        bound = math.sqrt(weight_scale / hidden)
        mode = _bias_init_mode(bias_init)
        with torch.no_grad():
            for layer in self.linear:
                layer.weight.uniform_(-bound, bound)
            for layer in [*self.linear, self.output_linear]:
                if layer.bias is None:
                    continue
                if mode == "zero":
                    layer.bias.zero_()
                elif mode == "uniform":
                    # The original crashes for the output layer here (uniform_(value=)); we draw U(-1, 1).
                    layer.bias.uniform_(-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.filters[0](x)
        for filt, lin in zip(self.filters[1:], self.linear):
            out = filt(x) * lin(out)
        return self.output_linear(out)


class MAGNet(MFNBase):
    """Multiplicative Anisotropic Gabor Network (FlexConv's kernel generator)."""

    def __init__(
        self, dim: int, out_channels: int, hidden: int = 32, no_layers: int = 3, input_scale: float = 25.6,
        init_spatial_value: float = 1.0, steerable: bool = False, bias: bool = True, bias_init=None,
        weight_scale: float = 1.0, alpha: float = 6.0, beta: float = 1.0,
    ):
        super().__init__(hidden, out_channels, no_layers, weight_scale, bias, bias_init)
        scale = input_scale / math.sqrt(no_layers + 1)
        self.filters = nn.ModuleList([
            GaborFilter(dim, hidden, scale, alpha / (layer + 1), beta, init_spatial_value,
                        anisotropic=True, steerable=steerable, bias=bias)
            for layer in range(no_layers + 1)
        ])


class GaborNet(MFNBase):
    """MFN-Gabor (Fathony et al. 2021): isotropic Gaussians, Gamma(alpha / (L + 1), beta)."""

    def __init__(
        self, dim: int, out_channels: int, hidden: int = 32, no_layers: int = 3, input_scale: float = 25.6,
        init_spatial_value: float = 1.0, bias: bool = True, bias_init=None,
        weight_scale: float = 1.0, alpha: float = 6.0, beta: float = 1.0,
    ):
        super().__init__(hidden, out_channels, no_layers, weight_scale, bias, bias_init)
        scale = input_scale / math.sqrt(no_layers + 1)
        self.filters = nn.ModuleList([
            GaborFilter(dim, hidden, scale, alpha / (no_layers + 1), beta, init_spatial_value,
                        anisotropic=False, bias=bias)
            for _ in range(no_layers + 1)
        ])


class SineLayer(nn.Conv2d):
    """``omega_0 * (W x + b)`` as a 1x1 conv; ``omega_0`` a buffer, or a parameter if learned."""

    def __init__(self, in_channels: int, out_channels: int, omega_0: float, learn_omega_0: bool, bias: bool):
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)
        value = torch.full((1,), float(omega_0))
        if learn_omega_0:
            self.omega_0 = nn.Parameter(value)
        else:
            self.register_buffer("omega_0", value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.omega_0 * super().forward(x)


class Sine(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


class SIREN(nn.Module):
    """``no_layers`` layers: sine layers ``dim -> hidden -> ... -> hidden`` then a linear output.

    Init (Sitzmann et al.): the first layer U(+-1/fan_in), later ones
    U(+-sqrt(6/fan_in)/omega_0); biases default unless ``bias_init`` is zero/uniform.
    """

    def __init__(
        self, dim: int, out_channels: int, hidden: int = 32, no_layers: int = 3, omega_0: float = 30.0,
        learn_omega_0: bool = False, bias: bool = True, bias_init=None,
    ):
        super().__init__()
        if no_layers < 2:
            raise ValueError(f"SIREN needs at least 2 layers, got {no_layers}")
        if omega_0 == 0:
            raise ValueError("SIREN needs kernel.omega_0 != 0 (the experiments use 30)")
        layers = [SineLayer(dim, hidden, omega_0, learn_omega_0, bias), Sine()]
        for _ in range(no_layers - 2):
            layers += [SineLayer(hidden, hidden, omega_0, learn_omega_0, bias), Sine()]
        layers.append(pointwise(hidden, out_channels, bias))
        self.kernel_net = nn.Sequential(*layers)
        mode = _bias_init_mode(bias_init)
        with torch.no_grad():
            convs = [m for m in self.kernel_net if isinstance(m, nn.Conv2d)]
            for i, conv in enumerate(convs):
                fan_in = conv.weight.shape[1]
                bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / omega_0
                conv.weight.uniform_(-bound, bound)
                if conv.bias is not None and mode == "zero":
                    conv.bias.zero_()
                elif conv.bias is not None and mode == "uniform":
                    conv.bias.uniform_(-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel_net(x)


KERNEL_TYPES = ("MAGNet", "Gabor", "SIREN")


def build_kernel_net(
    kernel_type: str, dim: int, out_channels: int, hidden: int = 32, no_layers: int = 3,
    input_scale: float = 25.6, init_spatial_value: float = 1.0, omega_0: float = 30.0,
    learn_omega_0: bool = False, steerable: bool = False, bias: bool = True, bias_init=None,
) -> nn.Module:
    """The generator named ``kernel_type`` (MAGNet, Gabor or SIREN)."""
    if kernel_type == "MAGNet":
        return MAGNet(dim, out_channels, hidden, no_layers, input_scale, init_spatial_value, steerable, bias, bias_init)
    if kernel_type == "Gabor":
        return GaborNet(dim, out_channels, hidden, no_layers, input_scale, init_spatial_value, bias, bias_init)
    if kernel_type == "SIREN":
        return SIREN(dim, out_channels, hidden, no_layers, omega_0, learn_omega_0, bias, bias_init)
    raise ValueError(f"unknown kernel type {kernel_type!r}; known: {', '.join(KERNEL_TYPES)}")
