"""The FlexConv config: section ``flexconv`` (groups ``net``, ``kernel``, ``conv``, ``mask``),
section ``cross_res``, and the recipe's fields of ``train`` (``train.mask_params_lr_factor``,
``train.omega_0_lr_factor``).

Below ``flexconv.`` the key names follow the original's ``cfg/config.yaml``: its
``net.no_hidden`` is ``flexconv.net.no_hidden``. The original's bare names (``net.*``,
``kernel.*``, ``conv.*``, ``mask.*``) are still read, with a note (``RENAMED``,
raysys/config/renames.py). Where the original's default is a sentinel (``-1``, ``""``),
the default here is the value of the paper's FlexNet-7 CIFAR-10 command. ``net.type``
has no key: raysys selects the architecture with ``model.name`` (``flexnet`` is
``net.type=ResNet``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from raysys.config import renames
from raysys.config.schema import config_fields, config_section
from raysys.families.flexconv.layers.kernels import KERNEL_TYPES
from raysys.registry import Registry

KERNEL_GENERATORS: Registry[str] = Registry("kernel generator", config_key="flexconv.kernel.type")
for _name in KERNEL_TYPES:
    KERNEL_GENERATORS.add(_name, _name)

CONV_TYPES: Registry[str] = Registry("FlexNet conv type", config_key="flexconv.conv.type")
for _name in ("FlexConv", "CKConv", "Conv", "SRF"):
    CONV_TYPES.add(_name, _name)

MASK_TYPES: Registry[str] = Registry("FlexConv mask type", config_key="flexconv.mask.type")
MASK_TYPES.add("gaussian", "gaussian")

NORM_TYPES: Registry[str] = Registry("FlexNet norm", config_key="flexconv.net.norm")
NORM_TYPES.add("BatchNorm", "BatchNorm")

NONLINEARITIES: Registry[str] = Registry("FlexNet nonlinearity", config_key="flexconv.net.nonlinearity")
for _name in ("ReLU", "LeakyReLU"):
    NONLINEARITIES.add(_name, _name)


@dataclass
class NetConfig:
    """FlexNet (the original's ``Img_ResNet``): a ResNet without pooling or striding."""

    no_hidden: int = 24
    no_blocks: int = 7
    # (factor, n_blocks) pairs; [0.0] gives every block the width no_hidden.
    block_width_factors: List[float] = field(default_factory=lambda: [1.0, 2.0, 1.5, 3.0, 2.0, 2.0])
    # Dropout after the first ReLU of each block.
    dropout: float = 0.0
    # Dropout on the network's input images, in training only (the original's trainer.py; every command uses 0).
    dropout_in: float = 0.0
    norm: str = "BatchNorm"
    nonlinearity: str = "ReLU"


@dataclass
class KernelRegularizeParams:
    """The aliasing regularizer's options (used by the FlexConv recipe, not by the model)."""

    res: int = 0
    res_offset: int = 0
    target: str = "gabor+mask"
    fn: str = "l2_relu"
    method: str = "together"
    factor: float = 0.001
    gauss_stddevs: float = 2.0
    gauss_factor: float = 0.5


@dataclass
class SrfParams:
    # Initial log2 scale of the N-Jet layers (sigma = 2 ** scale); 0 = sigma 1, as the original.
    scale: float = 0.0


@dataclass
class KernelConfig:
    """The continuous kernel generator of CKConv/FlexConv."""

    type: str = "MAGNet"
    no_hidden: int = 32
    no_layers: int = 3
    # SIREN's frequency (the experiments use 30).
    omega_0: float = 0.0
    learn_omega_0: bool = False
    # MAGNet: rotate the Gabor envelopes.
    steerable: bool = False
    # Range of the Gabor centres; FlexConv overrides it with 1.667 * flexconv.mask.init_value.
    init_spatial_value: float = 1.0
    # None (torch's default), zero or uniform.
    bias_init: str = "None"
    input_scale: float = 25.6
    # Kernel multiplier; cross-resolution uses (source/target)^2.
    sampling_rate_norm: float = 1.0
    # The aliasing regularizer (the recipe's business).
    regularize: bool = False
    regularize_params: KernelRegularizeParams = field(default_factory=KernelRegularizeParams)
    srf: SrfParams = field(default_factory=SrfParams)


@dataclass
class ConvConfig:
    """Which convolution FlexNet uses and how it is computed."""

    type: str = "FlexConv"
    # "same" (the input width) or an odd integer (CIFAR: 33). For type=Conv: the kernel size.
    horizon: str = "same"
    # auto: FFT when the smaller kernel side >= fft_min_kernel; true/false to force.
    use_fft: str = "auto"
    fft_min_kernel: int = 15
    bias: bool = True


@dataclass
class MaskConfig:
    """FlexConv's learnable Gaussian mask."""

    use: bool = True
    type: str = "gaussian"
    # Stored only: the original uses it for the (unimplemented) sigmoid mask.
    temperature: float = 15.0
    # Initial sigma of the mask, in units of the [-1, 1] grid.
    init_value: float = 0.075
    dynamic_cropping: bool = True
    threshold: float = 0.1


@config_section("flexconv")
@dataclass
class FlexConvConfig:
    """FlexNet and its convolutions: the original's ``net``, ``kernel``, ``conv`` and ``mask`` groups."""

    net: NetConfig = field(default_factory=NetConfig)
    kernel: KernelConfig = field(default_factory=KernelConfig)
    conv: ConvConfig = field(default_factory=ConvConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)


# The sections' names before they moved under ``flexconv`` (the original's names).
RENAMED = ("net", "kernel", "conv", "mask")
for _name in RENAMED:
    renames.rename(_name, f"flexconv.{_name}")

# Which weights the fine-tuning phase starts from: the source phase's best test epoch (the
# original: trainer.py reloads the best epoch's weights before run_crossres.py saves them) or its last.
FINETUNE_FROM: Registry[str] = Registry("fine-tuning start", config_key="cross_res.finetune_from")
FINETUNE_FROM.add("best", "best")
FINETUNE_FROM.add("last", "last")


@config_section("cross_res")
@dataclass
class CrossResConfig:
    """Train at one image side length, then fine-tune at another (0 = off): ``run_crossres.py``.

    The two phases are raysys/train/phases.py's; this section exists only in FlexConv runs.
    """

    source_res: int = 0
    target_res: int = 0
    finetune_epochs: int = 100
    # Learning rate of the fine-tuning phase (0 = train.lr, as the original).
    finetune_lr: float = 0.0
    # best: fine-tune from the source phase's best-test-accuracy epoch (the original); last: its last epoch.
    finetune_from: str = "best"


def _without_cross_res(tree) -> bool:
    section = tree.get("cross_res") or {}
    return not (section.get("source_res") or section.get("target_res"))


# Runs recorded before finetune_from existed fine-tuned from the last source epoch.
renames.added_key("cross_res.finetune_from", "last", inert=_without_cross_res)


@config_fields("train")
@dataclass
class FlexConvTrainFields:
    """The FlexConv recipe's fields of ``train``: lr multipliers of the mask parameters and of a learnable SIREN omega_0."""

    mask_params_lr_factor: float = 1.0
    omega_0_lr_factor: float = 1.0
