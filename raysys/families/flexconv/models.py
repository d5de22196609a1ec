"""FlexNet (Romero, Bruintjes et al., ICLR 2022): a ResNet of continuous-kernel convolutions.

The original's ``Img_ResNet`` (``net.type=ResNet``), registered as ``flexnet``: a factory of
plain keyword arguments (``create_model("flexnet", in_channels=3, num_classes=10, horizon="33")``)
with the adapter :func:`flexnet_kwargs` from the ``flexconv`` config section:

    stem conv -> norm -> ReLU -> blocks -> global average pool -> 1x1 linear

with no pooling or striding anywhere. A block is
``ReLU(norm2(conv2(Dropout(ReLU(norm1(conv1 x))))) + shortcut(x))``, the shortcut a 1x1
linear layer (with bias) when the width changes. ``block_width_factors`` (``flexconv.net.block_width_factors``) is read in
(factor, n_blocks) pairs: FlexNet-7's ``[1, 2, 1.5, 3, 2, 2]`` with ``no_hidden=24``
gives widths 24, 24, 36, 36, 36, 48, 48 (``int(no_hidden * factor)``); the output layer
takes ``int(no_hidden * factors[-2])`` channels. The output layer is Kaiming-normal with
zero bias; everything else keeps its own init.

``flexconv.conv.type`` selects the convolution: ``FlexConv``, ``CKConv``, ``Conv`` (a plain
``Conv2d`` with kernel ``flexconv.conv.horizon``) or ``SRF`` (N-Jet). FlexNet-7 with MAGNet on
CIFAR-10 has 671,650 parameters, as the original (tests/test_flexnet.py shows the sum).
Module names follow the original (``cconv1``, ``norm1``, ``blocks.i.cconv1``, ...,
``out_layer``).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raysys.families.flexconv import config as flexnet_config
from raysys.families.flexconv.layers.ckconv import CKConv, FlexConv, parse_horizon
from raysys.families.flexconv.layers.srf import SRFConv2d
from raysys.models.registry import InputSpec, register_model

ConvFactory = Callable[[int, int], nn.Module]


def width_factors(block_width_factors: Sequence[float], no_blocks: int) -> List[float]:
    """Per-block width factors from (factor, n_blocks) pairs; ``[0.0, ...]`` means all 1."""
    factors = list(block_width_factors)
    if not factors or factors[0] == 0.0:
        out = [1.0] * no_blocks
    else:
        if len(factors) % 2:
            raise ValueError(f"flexconv.net.block_width_factors must hold (factor, n_blocks) pairs, got {factors}")
        out = []
        for factor, count in zip(factors[0::2], factors[1::2]):
            if int(count) != count:
                raise ValueError(f"flexconv.net.block_width_factors: block count {count} is not an integer")
            out += [float(factor)] * int(count)
    if len(out) != no_blocks:
        raise ValueError(f"flexconv.net.block_width_factors give {len(out)} blocks but flexconv.net.no_blocks={no_blocks}")
    return out


class FlexNetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, conv: ConvFactory, norm, nonlinear, dropout: float):
        super().__init__()
        self.cconv1 = conv(in_channels, out_channels)
        self.cconv2 = conv(out_channels, out_channels)
        self.nonlinear = nonlinear()
        self.norm1 = norm(out_channels)
        self.norm2 = norm(out_channels)
        self.dp = nn.Dropout(dropout)
        shortcut = [nn.Conv2d(in_channels, out_channels, kernel_size=1)] if in_channels != out_channels else []
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dp(self.nonlinear(self.norm1(self.cconv1(x))))
        return self.nonlinear(self.norm2(self.cconv2(out)) + self.shortcut(x))


class FlexNet(nn.Module):
    def __init__(
        self, in_channels: int, num_classes: int, conv: ConvFactory, no_hidden: int = 24, no_blocks: int = 7,
        block_width_factors: Sequence[float] = (1.0, 2.0, 1.5, 3.0, 2.0, 2.0), dropout: float = 0.0,
        dropout_in: float = 0.0, norm: str = "BatchNorm", nonlinearity: str = "ReLU",
    ):
        super().__init__()
        norm_type = {"BatchNorm": nn.BatchNorm2d}[norm]
        nonlinear = {"ReLU": nn.ReLU, "LeakyReLU": nn.LeakyReLU}[nonlinearity]
        factors = width_factors(block_width_factors, no_blocks)
        self.dropout_in = nn.Dropout(dropout_in) if dropout_in > 0 else nn.Identity()
        self.cconv1 = conv(in_channels, no_hidden)
        self.norm1 = norm_type(no_hidden)
        self.nonlinear = nonlinear()
        widths = [int(no_hidden * f) for f in factors]
        inputs = [no_hidden, *widths[:-1]]
        self.blocks = nn.Sequential(*[
            FlexNetBlock(i, o, conv, norm_type, nonlinear, dropout) for i, o in zip(inputs, widths)
        ])
        final = no_hidden if block_width_factors[0] == 0.0 else int(no_hidden * block_width_factors[-2])
        self.out_layer = nn.Conv2d(final, num_classes, kernel_size=1)
        nn.init.kaiming_normal_(self.out_layer.weight)
        nn.init.zeros_(self.out_layer.bias)
        self.widths = widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.nonlinear(self.norm1(self.cconv1(self.dropout_in(x))))
        out = self.blocks(out)
        out = F.adaptive_avg_pool2d(out, 1)
        return self.out_layer(out).flatten(1)


_NET, _KERNEL, _CONV, _MASK = (flexnet_config.NetConfig(), flexnet_config.KernelConfig(),
                               flexnet_config.ConvConfig(), flexnet_config.MaskConfig())


def conv_factory(
    conv_type: str = _CONV.type, horizon: Any = _CONV.horizon, *, conv_bias: bool = _CONV.bias,
    use_fft: str = _CONV.use_fft, fft_min_kernel: int = _CONV.fft_min_kernel, srf_scale: float = _KERNEL.srf.scale,
    mask_use: bool = _MASK.use, mask_type: str = _MASK.type, mask_init_value: float = _MASK.init_value,
    mask_temperature: float = _MASK.temperature, mask_dynamic_cropping: bool = _MASK.dynamic_cropping,
    mask_threshold: float = _MASK.threshold, **kernel: Any,
) -> ConvFactory:
    """``(in_channels, out_channels) -> layer`` for ``conv_type``; ``kernel``: CKConv's ``kernel_*`` arguments."""
    if conv_type in ("CKConv", "FlexConv"):
        common = dict(horizon=parse_horizon(horizon), conv_bias=bool(conv_bias), conv_use_fft=str(use_fft),
                      fft_min_kernel=int(fft_min_kernel), **kernel)
        if conv_type == "CKConv":
            return partial(CKConv, **common)
        return partial(
            FlexConv, **common, mask_use=bool(mask_use), mask_type=str(mask_type), mask_init_value=float(mask_init_value),
            mask_temperature=float(mask_temperature), mask_dynamic_cropping=bool(mask_dynamic_cropping),
            mask_threshold=float(mask_threshold),
        )
    if conv_type == "Conv":
        size = parse_horizon(horizon)
        if size == "same":
            raise ValueError("flexconv.conv.type=Conv needs an odd integer flexconv.conv.horizon (the kernel size)")
        return partial(nn.Conv2d, kernel_size=size, padding=size // 2, bias=bool(conv_bias))
    if conv_type == "SRF":
        return partial(SRFConv2d, init_k=2.0, init_order=4, init_scale=float(srf_scale), learn_sigma=True)
    raise ValueError(f"unknown flexconv.conv.type {conv_type!r}; known: {', '.join(flexnet_config.CONV_TYPES.names())}")


def flexnet_kwargs(cfg: Any, spec: InputSpec) -> Dict[str, Any]:
    """The adapter: ``cfg.flexconv`` (net, kernel, conv, mask) and the input spec -> :func:`flexnet`'s keyword arguments."""
    section = getattr(cfg, "flexconv", None) if cfg is not None else None
    section = section if section is not None else flexnet_config.FlexConvConfig()
    net, kernel, conv, mask = section.net, section.kernel, section.conv, section.mask
    return dict(
        in_channels=spec.channels, num_classes=spec.num_classes,
        no_hidden=int(net.no_hidden), no_blocks=int(net.no_blocks),
        block_width_factors=[float(f) for f in net.block_width_factors], dropout=float(net.dropout),
        dropout_in=float(net.dropout_in), norm=str(net.norm), nonlinearity=str(net.nonlinearity),
        conv_type=str(conv.type), horizon=str(conv.horizon), conv_bias=bool(conv.bias), use_fft=str(conv.use_fft),
        fft_min_kernel=int(conv.fft_min_kernel),
        kernel_type=str(kernel.type), kernel_no_hidden=int(kernel.no_hidden), kernel_no_layers=int(kernel.no_layers),
        kernel_omega_0=float(kernel.omega_0), kernel_learn_omega_0=bool(kernel.learn_omega_0),
        kernel_steerable=bool(kernel.steerable), kernel_init_spatial_value=float(kernel.init_spatial_value),
        kernel_bias_init=str(kernel.bias_init), kernel_input_scale=float(kernel.input_scale),
        kernel_sampling_rate_norm=float(kernel.sampling_rate_norm), srf_scale=float(kernel.srf.scale),
        mask_use=bool(mask.use), mask_type=str(mask.type), mask_init_value=float(mask.init_value),
        mask_temperature=float(mask.temperature), mask_dynamic_cropping=bool(mask.dynamic_cropping),
        mask_threshold=float(mask.threshold),
    )


@register_model("flexnet", adapter=flexnet_kwargs)
def flexnet(
    in_channels: int = 3, num_classes: int = 10, *, no_hidden: int = _NET.no_hidden, no_blocks: int = _NET.no_blocks,
    block_width_factors: Sequence[float] = tuple(_NET.block_width_factors), dropout: float = _NET.dropout,
    dropout_in: float = _NET.dropout_in, norm: str = _NET.norm, nonlinearity: str = _NET.nonlinearity,
    conv_type: str = _CONV.type, horizon: Any = _CONV.horizon, kernel_type: str = _KERNEL.type,
    kernel_no_hidden: int = _KERNEL.no_hidden, kernel_no_layers: int = _KERNEL.no_layers,
    kernel_omega_0: float = _KERNEL.omega_0, kernel_learn_omega_0: bool = _KERNEL.learn_omega_0,
    kernel_steerable: bool = _KERNEL.steerable, kernel_init_spatial_value: float = _KERNEL.init_spatial_value,
    kernel_bias_init: str = _KERNEL.bias_init, kernel_input_scale: float = _KERNEL.input_scale,
    kernel_sampling_rate_norm: float = _KERNEL.sampling_rate_norm, **conv_options: Any,
) -> FlexNet:
    """FlexNet from plain arguments: ``create_model("flexnet", no_hidden=24, horizon="33")``.

    The defaults are the config's (FlexNet-7, MAGNet, FlexConv with ``horizon="same"``);
    ``conv_options`` are :func:`conv_factory`'s (``conv_bias``, ``use_fft``, ``mask_*``, ``srf_scale``, ...).
    """
    conv = conv_factory(
        conv_type, horizon, kernel_type=kernel_type, kernel_no_hidden=kernel_no_hidden,
        kernel_no_layers=kernel_no_layers, kernel_omega_0=kernel_omega_0, kernel_learn_omega_0=kernel_learn_omega_0,
        kernel_steerable=kernel_steerable, kernel_init_spatial_value=kernel_init_spatial_value,
        kernel_bias_init=kernel_bias_init, kernel_input_scale=kernel_input_scale,
        kernel_sampling_rate_norm=kernel_sampling_rate_norm, **conv_options,
    )
    return FlexNet(
        in_channels, num_classes, conv, no_hidden=int(no_hidden), no_blocks=int(no_blocks),
        block_width_factors=[float(f) for f in block_width_factors], dropout=float(dropout),
        dropout_in=float(dropout_in), norm=str(norm), nonlinearity=str(nonlinearity),
    )
