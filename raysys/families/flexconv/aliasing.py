"""FlexConv's aliasing regularizer: keep the kernels' frequencies below Nyquist.

For each Gabor filter of a MAGNet/MFN-Gabor generator the highest frequency it
can produce (in cycles per unit of the [-1, 1] grid) is bounded by
``max|W_g| / 2pi + gauss_stddevs * max|gamma| / 2pi`` -- the sine's frequency
plus the widening of the spectrum by the Gaussian envelope. (The original
computes ``max(|W_g|/2pi + |gamma| s/2pi)`` over shapes (H,2,1,1) and (H,2),
which broadcast to all pairs, so it is exactly this sum of maxima.) With
``target=gabor+mask`` the mask's own bandwidth ``s * max(1/|sigma_y|,
1/|sigma_x|) / 2pi`` is split evenly over the L+1 filters and added.

A multiplicative filter network multiplies its filters, so their frequencies
add: ``method=together`` gives each filter 1/(L+1) of the Nyquist frequency
``(res - 1) / 2 * 0.5`` of a grid with ``res`` samples; ``method=summed``
compares each layer's summed frequency with the whole Nyquist frequency. The
loss is ``factor * sum(relu(freq - nyquist)^2)`` (``fn=l2_relu``) or a
shifted ELU (``fn=offset_elu``).

``res`` is the grid the kernels are sampled on in the phase being trained:
``flexconv.kernel.regularize_params.res`` if positive, else the phase's input side + 1
(the kernel grid of ``run_crossres.py``), plus ``res_offset``. The original's
``run_experiment.py`` left ``res = 0`` -- a negative Nyquist frequency that
penalises every frequency -- which is fixed here.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List, Sequence

import torch
from torch import nn

from raysys.errors import ConfigError
from raysys.families.flexconv.layers.ckconv import CKConv, FlexConv
from raysys.registry import Registry

TARGETS: Registry[str] = Registry("aliasing target", config_key="flexconv.kernel.regularize_params.target")
TARGETS.add("gabor", "gabor")
TARGETS.add("gabor+mask", "gabor+mask")

METHODS: Registry[str] = Registry("aliasing method", config_key="flexconv.kernel.regularize_params.method")
METHODS.add("together", "together")
METHODS.add("summed", "summed")

PENALTIES: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry(
    "aliasing penalty", config_key="flexconv.kernel.regularize_params.fn")

TWO_PI = 2.0 * math.pi


@PENALTIES.register("l2_relu")
def l2_relu(freqs: torch.Tensor, nyquist: torch.Tensor) -> torch.Tensor:
    return torch.relu(freqs - nyquist).pow(2).sum()


@PENALTIES.register("offset_elu")
def offset_elu(freqs: torch.Tensor, nyquist: torch.Tensor, offset: float = 4.0, scale: float = 5.0) -> torch.Tensor:
    """An L1-like smooth stand-in for l2_relu: exp below ``offset`` above Nyquist, linear beyond."""
    over = freqs - nyquist
    return (scale * torch.where(over > offset, over - offset + 1.0, torch.exp(over - offset))).sum()


def nyquist_frequency(res: float) -> float:
    """Nyquist frequency of ``res`` samples on [-1, 1]: half the sampling rate (res - 1) / 2."""
    return (float(res) - 1.0) / 2.0 * 0.5


def regularized_layers(model: nn.Module) -> List[CKConv]:
    """The continuous-kernel layers, in module order."""
    return [m for m in model.modules() if isinstance(m, CKConv)]


def filter_frequencies(layer: CKConv, gauss_stddevs: float) -> torch.Tensor:
    """(L+1,) upper bounds of each Gabor filter's frequency (with gradients)."""
    filters = getattr(layer.Kernel, "filters", None)
    if filters is None:
        raise ConfigError(f"flexconv.kernel.regularize=true needs a Gabor generator (flexconv.kernel.type=MAGNet or Gabor), not {layer.kernel_type}")
    return torch.stack([
        f.linear.weight.abs().max() / TWO_PI + gauss_stddevs * f.gamma.abs().max() / TWO_PI for f in filters
    ])


def mask_frequency(layer: FlexConv, gauss_stddevs: float) -> torch.Tensor:
    """The Gaussian mask's bandwidth: ``s * max(1/|sigma_y|, 1/|sigma_x|) / 2pi``."""
    inverse = 1.0 / layer.mask_params[:, 1].abs()
    return gauss_stddevs * inverse.max() / TWO_PI


def layer_frequencies(layer: CKConv, target: str, gauss_stddevs: float) -> torch.Tensor:
    """Per-filter frequencies of one layer, the mask's share included for ``gabor+mask``."""
    freqs = filter_frequencies(layer, gauss_stddevs)
    if TARGETS.get(target) == "gabor+mask":
        if not isinstance(layer, FlexConv) or not layer.mask:
            raise ConfigError("flexconv.kernel.regularize_params.target=gabor+mask needs flexconv.conv.type=FlexConv with flexconv.mask.use=true")
        freqs = freqs + mask_frequency(layer, gauss_stddevs) / freqs.numel()
    return freqs


def frequencies_and_limits(layers: Sequence[CKConv], res: float, target: str, method: str, gauss_stddevs: float):
    """Stacked frequencies (layers, filters) or (layers,) and the matching Nyquist limits."""
    per_filter = torch.stack([layer_frequencies(layer, target, gauss_stddevs) for layer in layers])
    nyquist = nyquist_frequency(res)
    if METHODS.get(method) == "summed":
        return per_filter.sum(1), torch.full((len(layers),), nyquist, device=per_filter.device)
    return per_filter, torch.full_like(per_filter, nyquist / per_filter.shape[1])


def regularization_res(params: Any, phase_resolution: int) -> int:
    """The kernel grid the regularizer protects: explicit ``res`` or the phase's side + 1, plus ``res_offset``."""
    base = int(params.res) if int(params.res) > 0 else int(phase_resolution) + 1
    return base + int(params.res_offset)


def aliasing_loss(model: nn.Module, params: Any, res: int) -> torch.Tensor:
    """``factor * fn(freqs, nyquist)`` over every continuous-kernel layer of ``model``."""
    layers = regularized_layers(model)
    if not layers:
        raise ConfigError("flexconv.kernel.regularize=true but the model has no CKConv/FlexConv layers")
    freqs, limits = frequencies_and_limits(layers, res, params.target, params.method, float(params.gauss_stddevs))
    return float(params.factor) * PENALTIES.get(params.fn)(freqs, limits)


def validate(params: Any) -> None:
    """Refuse unknown target/method/fn early, with the allowed values."""
    TARGETS.get(params.target)
    METHODS.get(params.method)
    PENALTIES.get(params.fn)
