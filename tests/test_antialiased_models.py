"""Antialiased CNNs: torchvision models + BlurPool surgery.

Each architecture is built once, on CPU, with weights=None. torchvision's baseline
parameter counts come from its weights metadata and its state_dict keys from a
build on the meta device, so no baseline is built on CPU except resnet18.

Random initialisation is nearly all of the build time (~30 s of CPU for the 23
models, ~1.7G parameters, against <1 s for the rest), so the sweep over all 23
skips it for the models whose values no test reads: their tensors are real CPU
tensors, allocated but not filled. Models that a test runs are built normally.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import get_model_weights

from raysys.config import load_config
from raysys.errors import ConfigError
from raysys.models import MODELS, InputSpec, build_model, create_model
from raysys.families.antialiased.models import (
    ARCHITECTURES, antialias, build_antialiased, build_baseline, load_baseline_weights,
)
from raysys.families.antialiased.blurpool import BlurConv2d, BlurPool, blur_kernel

IMAGENET = InputSpec(3, 224, 1000)

# Models used by several tests: built once, kept for the module.
_SHARED = ("resnet18", "resnet50", "vgg11", "alexnet", "densenet121", "mobilenet_v2")
_cache: dict = {}


def lpf4(arch: str) -> nn.Module:
    if arch in _cache:
        return _cache[arch]
    model = create_model(f"{arch}_lpf4").eval()  # keyword defaults: 3 channels, 1000 classes
    if arch in _SHARED:
        _cache[arch] = model
    return model


# torch.nn.init functions torchvision's constructors call (directly or via reset_parameters).
_INIT_FUNCTIONS = ("normal_", "uniform_", "kaiming_normal_", "kaiming_uniform_", "constant_", "ones_", "zeros_")


def _unfilled(tensor, *args, **kwargs):
    return tensor


def blurpools(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, BlurPool)]


def strided(model: nn.Module):
    """Names of convs and pools that still subsample by striding."""
    names = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            stride = m.stride if isinstance(m.stride, int) else max(m.stride)
            if stride > 1:
                names.append(name)
    return names


def _family(arch: str) -> str:
    for family in ("alexnet", "vgg", "densenet", "mobilenet"):
        if arch.startswith(family):
            return family
    return "resnet"


# BlurPools per family with the original's placement, and the strided layers left.
EXPECTED_BLURPOOLS = {"alexnet": 4, "vgg": 5, "resnet": 7, "densenet": 4, "mobilenet": 4}
EXPECTED_STRIDED = {
    "alexnet": ["features.0"],  # conv1 at stride 2 (torchvision: 4)
    "vgg": [],
    "resnet": ["conv1"],
    "densenet": ["features.conv0"],
    "mobilenet": ["features.0.0"],
}


def test_all_names_are_registered():
    assert len(ARCHITECTURES) == 23
    for arch in ARCHITECTURES:
        assert arch in MODELS
        for size in range(1, 8):
            assert f"{arch}_lpf{size}" in MODELS


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_lpf_model_has_the_torchvision_parameters_and_state_dict_keys(arch, monkeypatch):
    if arch not in _SHARED:  # structure only: skip the random init (see the module docstring)
        for name in _INIT_FUNCTIONS:
            monkeypatch.setattr(torch.nn.init, name, _unfilled)
    model = lpf4(arch)
    assert all(p.device.type == "cpu" for p in model.parameters())
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == get_model_weights(arch).DEFAULT.meta["num_params"]
    with torch.device("meta"):
        baseline = torchvision.models.get_model(arch, weights=None)
    ours = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
    theirs = {k: (tuple(v.shape), v.dtype) for k, v in baseline.state_dict().items()}
    assert ours == theirs  # hence strict loading of a baseline state_dict works
    family = _family(arch)
    assert len(blurpools(model)) == EXPECTED_BLURPOOLS[family]
    assert all(b.filt_size == 4 and b.stride == 2 and b.pad_type == "reflect" for b in blurpools(model))
    assert strided(model) == EXPECTED_STRIDED[family]
    assert all(torch.equal(b.filt[0, 0], blur_kernel(4)) for b in blurpools(model))


def test_baseline_state_dict_loads_strictly_for_finetuning(tmp_path):
    torch.manual_seed(0)
    baseline = build_baseline("resnet18").eval()
    path = tmp_path / "resnet18.pth"
    torch.save(baseline.state_dict(), path)
    model = load_baseline_weights(copy.deepcopy(lpf4("resnet18")), path)
    for (name, ours), theirs in zip(model.state_dict().items(), baseline.state_dict().values()):
        assert torch.equal(ours, theirs), name
    # also plain load_state_dict(strict=True), and the original's {'state_dict': ...} wrapper
    model.load_state_dict(baseline.state_dict(), strict=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in baseline.state_dict().items()}}, path)
    load_baseline_weights(model, path)
    # a missing key is an error (strict)
    partial = dict(baseline.state_dict())
    partial.pop("fc.bias")
    with pytest.raises(RuntimeError, match="fc.bias"):
        load_baseline_weights(model, partial)


def test_old_densenet_key_names_load():
    """torchvision's DenseNet download files still say "denselayer1.norm.1.weight"."""
    model = lpf4("densenet121")  # the shared model; only its values change
    state = {k: v * 0.5 if v.is_floating_point() else v.clone() for k, v in model.state_dict().items()}
    old = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in state.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    load_baseline_weights(model, old)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_resnet50_placement():
    model = lpf4("resnet50")
    stem = model.maxpool
    assert isinstance(stem, nn.Sequential) and len(stem) == 2
    assert isinstance(stem[0], nn.MaxPool2d) and stem[0].kernel_size == 2 and stem[0].stride == 1
    assert isinstance(stem[1], BlurPool) and (stem[1].channels, stem[1].stride, stem[1].filt_size) == (64, 2, 4)
    for layer, width in ((model.layer2, 128), (model.layer3, 256), (model.layer4, 512)):
        block = layer[0]
        # conv2 (3x3) runs at stride 1; BN + ReLU; then BlurPool(s2) feeds conv3 (1x1, s1)
        assert type(block.conv2) is nn.Conv2d and block.conv2.stride == (1, 1)
        assert isinstance(block.conv3, BlurConv2d) and block.conv3.stride == (1, 1)
        assert (block.conv3.blur.channels, block.conv3.blur.stride) == (width, 2)
        # shortcut: BlurPool(s2) then 1x1 conv at stride 1, then BN
        shortcut = block.downsample[0]
        assert isinstance(shortcut, BlurConv2d) and shortcut.kernel_size == (1, 1) and shortcut.stride == (1, 1)
        assert (shortcut.blur.channels, shortcut.blur.stride) == (shortcut.in_channels, 2)
        assert isinstance(block.downsample[1], nn.BatchNorm2d)
        assert all(type(m) is not BlurConv2d for b in list(layer)[1:] for m in b.modules())
    # layer1 only widens channels: its shortcut is not blurred
    assert type(model.layer1[0].downsample[0]) is nn.Conv2d


def test_resnet18_basic_block_placement():
    block = lpf4("resnet18").layer2[0]
    assert block.conv1.stride == (1, 1)  # conv3x3 s1 -> BN -> ReLU -> [BlurPool(s2) -> conv3x3]
    assert isinstance(block.conv2, BlurConv2d) and block.conv2.stride == (1, 1)
    assert (block.conv2.blur.channels, block.conv2.blur.stride) == (128, 2)


def test_vgg_placement():
    features = lpf4("vgg11").features
    pools = [m for m in features if isinstance(m, nn.Sequential)]
    assert [p[1].channels for p in pools] == [64, 128, 256, 512, 512]
    for pool in pools:
        assert isinstance(pool[0], nn.MaxPool2d) and (pool[0].kernel_size, pool[0].stride) == (2, 1)
        assert isinstance(pool[1], BlurPool) and pool[1].stride == 2


def test_alexnet_placement():
    features = lpf4("alexnet").features
    assert features[0].stride == (2, 2)  # conv11 s2 -> ReLU -> BlurPool
    assert isinstance(features[1][0], nn.ReLU) and isinstance(features[1][1], BlurPool)
    for index, channels in ((2, 64), (5, 192), (12, 256)):
        pool, blur = features[index]
        assert isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.stride) == (3, 1)
        assert isinstance(blur, BlurPool) and (blur.channels, blur.stride) == (channels, 2)


def test_densenet_placement():
    features = lpf4("densenet121").features
    pool, blur = features.pool0
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 1, 1)
    assert isinstance(blur, BlurPool) and (blur.channels, blur.stride) == (64, 2)
    for i in (1, 2, 3):
        transition = getattr(features, f"transition{i}")
        assert isinstance(transition.pool, BlurPool)
        assert (transition.pool.channels, transition.pool.stride) == (transition.conv.out_channels, 2)
    assert not any(isinstance(m, nn.AvgPool2d) for m in features.modules())


def test_mobilenet_v2_placement():
    features = lpf4("mobilenet_v2").features
    strided_blocks = [i for i, block in enumerate(features) if getattr(block, "stride", 1) == 2]
    assert strided_blocks == [2, 4, 7, 14]
    for i in strided_blocks:
        depthwise = features[i].conv[1]
        conv, _, act = depthwise
        assert conv.groups == conv.in_channels and conv.stride == (1, 1)
        assert isinstance(act[0], nn.ReLU6) and isinstance(act[1], BlurPool)  # dw s1 -> BN -> ReLU6 -> BlurPool
        assert (act[1].channels, act[1].stride) == (conv.out_channels, 2)
        assert isinstance(features[i].conv[2], nn.Conv2d) and features[i].conv[2].kernel_size == (1, 1)  # pw-linear
    assert features[0][0].stride == (2, 2)  # the stem conv stays strided, as in the original


@pytest.mark.parametrize("arch", ["resnet18", "alexnet", "mobilenet_v2"])
def test_imagenet_input_gives_1000_logits(arch):
    with torch.no_grad():
        assert lpf4(arch)(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize("arch, side, feature_side", [
    ("alexnet", 224, 6), ("resnet50", 64, 2), ("vgg11", 64, 2), ("densenet121", 64, 2), ("mobilenet_v2", 64, 2),
])
def test_feature_maps_have_the_baseline_size(arch, side, feature_side):
    """BlurPool takes over each stride: the trunk subsamples as much as torchvision's (/32; AlexNet 224 -> 6)."""
    model = lpf4(arch)
    trunk = nn.Sequential(*list(model.children())[:-2]) if arch == "resnet50" else model.features
    with torch.no_grad():
        assert trunk(torch.randn(1, 3, side, side)).shape[-2:] == (feature_side, feature_side)


@pytest.mark.parametrize("size", range(1, 8))
def test_every_filter_size_builds_and_runs_on_small_inputs(size):
    """resnet18 on 32x32: layer4 sees 2x2 maps, too small to reflect for f >= 4 (issue #47)."""
    model = create_model(f"resnet18_lpf{size}", in_channels=1, num_classes=10).eval()
    assert {b.filt_size for b in blurpools(model)} == {size}
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_config_section_sets_the_pad_type():
    cfg = load_config("cifar-resnet/fashion-mnist-resnet20", ["model.name=resnet18_lpf3", "antialias.pad_type=zero"])
    model = build_model(cfg, InputSpec(1, 28, 7))
    assert {(b.pad_type, b.filt_size) for b in blurpools(model)} == {("zero", 3)}
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    assert load_config("cifar-resnet/fashion-mnist-resnet20", ["model.name=resnet18_lpf3"]).antialias.pad_type == "reflect"
    with pytest.raises(ConfigError, match="replicate"):
        load_config("cifar-resnet/fashion-mnist-resnet20", ["model.name=resnet18_lpf3", "antialias.pad_type=replicat"])
    # A run of another family's model has no antialias section, and refuses its keys.
    assert "antialias" not in load_config("cifar-resnet/fashion-mnist-resnet20")
    with pytest.raises(ConfigError, match="section 'antialias' belongs to family antialiased"):
        load_config("cifar-resnet/fashion-mnist-resnet20", ["antialias.pad_type=replicat"])


def test_baseline_names_build_torchvision_models():
    model = create_model("resnet18", num_classes=10)
    assert type(model) is torchvision.models.ResNet and not blurpools(model)
    assert model.fc.out_features == 10
    # The baselines are shared models (raysys/models/torchvision_models.py), the _lpf models the family's.
    assert MODELS.family("resnet18") is None and MODELS.family("resnet18_lpf4") == "antialiased"


def test_models_build_from_keyword_arguments_without_a_config():
    model = create_model("resnet18_lpf3", num_classes=10, in_channels=1, pad_type="zero")
    assert {(b.filt_size, b.pad_type) for b in blurpools(model)} == {(3, "zero")}
    assert model.conv1.in_channels == 1 and model.fc.out_features == 10
    cfg = load_config("antialiased/scratch-resnet18_lpf4", ["antialias.pad_type=replicate"])
    from raysys.models import model_kwargs

    assert model_kwargs(cfg, InputSpec(3, 224, 10)) == dict(
        num_classes=10, in_channels=3, pad_type="replicate", weights="", finetune=False)
    cfg = load_config("antialiased/finetune-resnet50_lpf4")
    assert model_kwargs(cfg, IMAGENET)["finetune"] is True and model_kwargs(cfg, IMAGENET)["weights"].endswith("resnet50.pth")
    cfg = load_config("antialiased/eval-resnext50_32x4d")
    assert model_kwargs(cfg, IMAGENET) == dict(num_classes=1000, in_channels=3, weights=cfg.antialias.weights)


def test_mobilenet_v2_classifier_has_no_dropout_as_the_original():
    """antialiased_cnns/mobilenet.py:139-142 comments the Dropout(0.2) out; torchvision's baseline keeps it."""
    assert not any(isinstance(m, nn.Dropout) for m in lpf4("mobilenet_v2").modules())
    assert any(isinstance(m, nn.Dropout) for m in create_model("mobilenet_v2", num_classes=10).modules())


def test_antialias_refuses_unknown_and_already_antialiased_models():
    with pytest.raises(TypeError):
        antialias(nn.Sequential(nn.Conv2d(3, 3, 3)))
    with pytest.raises(ValueError, match="already"):
        antialias(lpf4("resnet18"))


def test_antialiasing_makes_resnet18_less_sensitive_to_a_one_pixel_shift():
    """Same random weights with and without BlurPool; eval mode; a 1-pixel horizontal shift.

    Relative logit change measured for seeds 0-3: 0.07-0.09 baseline, 0.011-0.014 lpf4."""
    torch.manual_seed(0)
    baseline = build_baseline("resnet18").eval()
    model = antialias(copy.deepcopy(baseline), 4).eval()
    g = torch.Generator().manual_seed(100)
    smooth = torch.nn.functional.interpolate(torch.randn(2, 3, 30, 30, generator=g), size=96, mode="bilinear")
    x = smooth + 0.3 * torch.randn(2, 3, 96, 96, generator=g)
    shifted = torch.roll(x, shifts=1, dims=3)

    def change(net):
        with torch.no_grad():
            a, b = net(x), net(shifted)
        return ((a - b).norm(dim=1) / a.norm(dim=1)).mean().item()

    assert change(model) < 0.5 * change(baseline)


def test_build_antialiased_matches_the_registry():
    model = build_antialiased("mobilenet_v2", 2, "replicate", num_classes=10)
    assert {(b.filt_size, b.pad_type) for b in blurpools(model)} == {(2, "replicate")}
    assert model.classifier[-1].out_features == 10
