"""Antialiased CNNs (Zhang, ICML 2019; adobe/antialiased-cnns): torchvision's
ImageNet architectures with BlurPool where the original put it.

``<arch>_lpf<N>`` (N = 1..7, the BlurPool filter size; the original ships 2, 3, 4
and 5 and defaults to 4) is built as torchvision's own ``<arch>`` followed by
model surgery (:func:`antialias`), in the manner of MosaicML Composer's blurpool
surgery. The surgery only changes strides, swaps parameter-free modules (max and
average pools, activations) for small ``nn.Sequential`` s that end in a
BlurPool, and swaps a few convs for :class:`~raysys.families.antialiased.blurpool.BlurConv2d`,
which is a ``Conv2d`` with the same parameters. BlurPool's filter is a
non-persistent buffer. Hence every ``<arch>_lpf<N>`` has exactly the parameters
and the state_dict keys of torchvision's ``<arch>``, and a torchvision state_dict
loads into it strictly (:func:`load_baseline_weights`, the original's
``--finetune``). The plain ``<arch>`` names are the shared torchvision baselines
(raysys/models/torchvision_models.py).

Each ``<arch>_lpf<N>`` is a factory with plain keyword arguments
(``create_model("resnet18_lpf4", num_classes=10, pad_type="zero")``, see
:func:`antialiased_model`); :func:`antialias_kwargs` maps a run's config to them.

Where BlurPool goes (each ``BlurPool`` has stride 2 and follows the ReLU, issue #7):

- ResNet/ResNeXt/Wide-ResNet: stem max pool -> MaxPool(2, s1) + BlurPool; a strided
  BasicBlock runs conv1 at s1 and blurs the input of conv2; a strided Bottleneck runs
  conv2 at s1 and blurs the input of conv3; the shortcut blurs, then its 1x1 conv runs at s1.
- VGG: each MaxPool(2, s2) -> MaxPool(2, s1) + BlurPool.
- AlexNet: conv1 at s2 (torchvision: s4), then ReLU + BlurPool; each MaxPool(3, s2) ->
  MaxPool(3, s1) + BlurPool.
- DenseNet: stem max pool -> MaxPool(3, s1, p1) + BlurPool; each transition's
  AvgPool(2, s2) -> BlurPool.
- MobileNetV2: a stride-2 depthwise conv runs at s1, its ReLU6 is followed by BlurPool;
  the classifier has no dropout, as the original's (antialiased_cnns/mobilenet.py:139-142).

The stem convs of ResNet, DenseNet and MobileNetV2 stay strided, as in the original
(``pool_only=True``, its default).

torchvision is imported where a model is built or antialiased, not at import time:
importing it loads ``torch._dynamo`` (seconds), and every Ray Train worker imports
this module when it discovers the families (raysys/families).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Union

import torch
from torch import nn

if TYPE_CHECKING:  # for the annotations only
    import torchvision
    from torchvision.models import resnet as tv_resnet
    from torchvision.models.densenet import DenseNet
    from torchvision.models.mobilenetv2 import MobileNetV2

from raysys.config.schema import config_section
from raysys.families.antialiased.blurpool import PAD_MODES, BlurConv2d, BlurPool
from raysys.families.antialiased.weights import load_antialiased_weights, renamed_densenet_keys
from raysys.models.registry import InputSpec, register_model
from raysys.models.torchvision_models import ARCHITECTURES, build_torchvision, register_weights_key
from raysys.registry import Registry

FILTER_SIZES = range(1, 8)
DEFAULT_FILTER_SIZE = 4

PAD_TYPES: Registry[str] = Registry("BlurPool pad type", config_key="antialias.pad_type")
for _name in ("reflect", "replicate", "zero"):
    PAD_TYPES.add(_name, PAD_MODES[_name], aliases=[a for a, m in PAD_MODES.items() if m == PAD_MODES[_name] and a != _name])


@config_section("antialias")
@dataclass
class AntialiasConfig:
    """Options of the ``<arch>_lpf<N>`` models; the filter size N is part of the name."""

    # BlurPool padding: reflect (the original's, its models never change it), replicate, zero.
    # A side too small to reflect is replicate-padded (original issue #47).
    pad_type: str = "reflect"
    # A weights file or http(s) URL loaded strictly into the model when it is built:
    # antialiased weights of the model's filter size (the original's --pretrained/--weights;
    # a URL is fetched into torch's hub cache with its hash check), or a torchvision baseline's
    # under train.recipe=antialiased-finetune (--finetune). Read with weights_only=True.
    weights: str = ""


def _blur_after(module: nn.Module, channels: int, filt_size: int, pad_type: str, stride: int = 2) -> nn.Sequential:
    return nn.Sequential(module, BlurPool(channels, pad_type=pad_type, filt_size=filt_size, stride=stride))


def _blur_input(conv: nn.Conv2d, stride: int, filt_size: int, pad_type: str) -> BlurConv2d:
    """``conv`` at stride 1, its input blurred and subsampled by ``stride`` first."""
    conv.stride = (1, 1)
    return BlurConv2d.from_conv(conv, blur_stride=stride, filt_size=filt_size, pad_type=pad_type)


def _square(value) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"antialiasing needs equal strides/kernels along both axes, got {value}")
    return int(value[0])


def _antialias_resnet(model: tv_resnet.ResNet, f: int, pad: str) -> None:
    from torchvision.models import resnet as tv_resnet

    model.maxpool = _blur_after(nn.MaxPool2d(kernel_size=2, stride=1), model.conv1.out_channels, f, pad)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in layer:
            if isinstance(block, tv_resnet.BasicBlock):
                strided, blurred = block.conv1, "conv2"
            elif isinstance(block, tv_resnet.Bottleneck):
                strided, blurred = block.conv2, "conv3"
            else:
                raise TypeError(f"unknown ResNet block {type(block).__name__}")
            stride = _square(strided.stride)
            if stride == 1:
                continue
            strided.stride = (1, 1)
            setattr(block, blurred, _blur_input(getattr(block, blurred), stride, f, pad))
            if block.downsample is not None:
                shortcut = block.downsample[0]
                block.downsample[0] = _blur_input(shortcut, _square(shortcut.stride), f, pad)


def _antialias_features(features: nn.Sequential, f: int, pad: str) -> None:
    """VGG and AlexNet: every strided MaxPool -> MaxPool at stride 1 + BlurPool."""
    channels = None
    for i, module in enumerate(features):
        if isinstance(module, nn.Conv2d):
            channels = module.out_channels
        elif isinstance(module, nn.MaxPool2d):
            pool = nn.MaxPool2d(module.kernel_size, stride=1, padding=module.padding)
            features[i] = _blur_after(pool, channels, f, pad, stride=_square(module.stride))


def _antialias_vgg(model: torchvision.models.VGG, f: int, pad: str) -> None:
    _antialias_features(model.features, f, pad)


def _antialias_alexnet(model: torchvision.models.AlexNet, f: int, pad: str) -> None:
    conv1 = model.features[0]
    if _square(conv1.stride) != 4 or not isinstance(model.features[1], nn.ReLU):
        raise TypeError("unexpected AlexNet stem: expected Conv2d(stride 4) + ReLU")
    conv1.stride = (2, 2)  # stride 4 = stride 2 + BlurPool(stride 2) after the ReLU
    model.features[1] = _blur_after(model.features[1], conv1.out_channels, f, pad)
    _antialias_features(model.features, f, pad)


def _antialias_densenet(model: DenseNet, f: int, pad: str) -> None:
    from torchvision.models.densenet import _Transition

    features = model.features
    pool0 = features.pool0
    features.pool0 = _blur_after(
        nn.MaxPool2d(pool0.kernel_size, stride=1, padding=pool0.padding), features.conv0.out_channels, f, pad,
        stride=_square(pool0.stride),
    )
    for module in features.children():
        if isinstance(module, _Transition):
            module.pool = BlurPool(module.conv.out_channels, pad_type=pad, filt_size=f, stride=_square(module.pool.stride))


def _antialias_mobilenet_v2(model: MobileNetV2, f: int, pad: str) -> None:
    from torchvision.models.mobilenetv2 import InvertedResidual

    for block in model.features:
        if not isinstance(block, InvertedResidual) or block.stride == 1:
            continue
        for unit in block.conv:
            conv = unit[0] if isinstance(unit, nn.Sequential) else None
            if isinstance(conv, nn.Conv2d) and conv.groups == conv.in_channels > 1 and _square(conv.stride) > 1:
                stride = _square(conv.stride)
                conv.stride = (1, 1)
                unit[2] = _blur_after(unit[2], conv.out_channels, f, pad, stride=stride)
                break
        else:
            raise TypeError("strided MobileNetV2 block without a strided depthwise conv")
    if isinstance(model.classifier[0], nn.Dropout):
        model.classifier[0] = nn.Identity()  # the original comments its Dropout(0.2) out; keys stay torchvision's


def _surgeries() -> Dict[type, Callable[[nn.Module, int, str], None]]:
    """The surgery of each torchvision model class."""
    import torchvision

    return {
        torchvision.models.ResNet: _antialias_resnet,
        torchvision.models.VGG: _antialias_vgg,
        torchvision.models.AlexNet: _antialias_alexnet,
        torchvision.models.DenseNet: _antialias_densenet,
        torchvision.models.MobileNetV2: _antialias_mobilenet_v2,
    }


def antialias(model: nn.Module, filt_size: int = DEFAULT_FILTER_SIZE, pad_type: str = "reflect") -> nn.Module:
    """Insert BlurPool into a torchvision ResNet/VGG/AlexNet/DenseNet/MobileNetV2, in place.

    Parameters and state_dict keys are unchanged; the model is returned.
    """
    pad_type = PAD_TYPES.canonical(pad_type)
    if any(isinstance(m, BlurPool) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} is already antialiased")
    for cls, surgery in _surgeries().items():
        if isinstance(model, cls):
            surgery(model, filt_size, pad_type)
            return model
    raise TypeError(f"no antialiasing surgery for {type(model).__name__}")


def build_baseline(arch: str, num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """torchvision's ``arch``, randomly initialised (the shared model ``arch``, without weights)."""
    return build_torchvision(arch, num_classes, in_channels)


def build_antialiased(
    arch: str, filt_size: int = DEFAULT_FILTER_SIZE, pad_type: str = "reflect", num_classes: int = 1000, in_channels: int = 3,
) -> nn.Module:
    """``<arch>_lpf<filt_size>``: torchvision's ``arch`` with BlurPool inserted."""
    return antialias(build_torchvision(arch, num_classes, in_channels), filt_size, pad_type)


def antialiased_model(
    arch: str, filt_size: int = DEFAULT_FILTER_SIZE, num_classes: int = 1000, in_channels: int = 3,
    pad_type: str = "reflect", weights: str = "", finetune: bool = False,
) -> nn.Module:
    """The registered ``<arch>_lpf<filt_size>``: :func:`build_antialiased`, then ``weights`` loaded.

    ``weights`` (a local file or URL) must be antialiased weights of this filter size, or,
    with ``finetune=True`` (the original's ``--finetune``), a torchvision ``arch`` baseline's.
    """
    model = build_antialiased(arch, filt_size, pad_type, num_classes, in_channels)
    if weights:
        load_antialiased_weights(model, weights, f"{arch}_lpf{filt_size}", finetune=finetune)
    return model


# The recipe of the original's --finetune (raysys/families/antialiased/recipe.py registers it).
FINETUNE_RECIPE = "antialiased-finetune"


def antialias_kwargs(cfg: Any, spec: InputSpec) -> Dict[str, Any]:
    """The adapter of the ``<arch>_lpf<N>`` models: the data's classes and channels, the ``antialias`` section,
    and whether the run fine-tunes from a baseline (``train.recipe=antialiased-finetune``)."""
    section = cfg.antialias
    return dict(
        num_classes=spec.num_classes, in_channels=spec.channels, pad_type=section.pad_type,
        weights=section.weights, finetune=cfg.train.recipe == FINETUNE_RECIPE,
    )


for _arch in ARCHITECTURES:
    for _size in FILTER_SIZES:
        register_model(f"{_arch}_lpf{_size}", adapter=antialias_kwargs)(functools.partial(antialiased_model, _arch, _size))
register_weights_key("antialias.weights")  # the shared baselines load it too (eval-resnext50_32x4d)


def load_baseline_weights(model: nn.Module, source: Union[str, os.PathLike, Mapping[str, torch.Tensor]]) -> nn.Module:
    """Load a torchvision baseline state_dict into ``model`` strictly (the original's ``--finetune``).

    ``source`` is a state_dict or a local file read with ``torch.load(weights_only=True)``;
    a ``{"state_dict": ...}`` wrapper (the original's checkpoints), DDP's ``module.``
    prefixes and old DenseNet key names are accepted. Every key must match.
    """
    if not isinstance(source, Mapping):
        source = torch.load(source, map_location="cpu", weights_only=True)
    if "state_dict" in source and isinstance(source["state_dict"], Mapping):
        source = source["state_dict"]
    state = {key.removeprefix("module."): value for key, value in source.items()}
    model.load_state_dict(renamed_densenet_keys(state), strict=True)
    return model
