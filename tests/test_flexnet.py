"""FlexNet: the original's parameter counts, output shapes per conv.type, config, summary."""
from __future__ import annotations

import json

import pytest
import torch

from raysys.cli.main import main as cli_main
from raysys.config import load_config
from raysys.models import InputSpec, build_model, create_model, model_kwargs
from raysys.families.flexconv.models import width_factors
from raysys.models.summary import count_parameters

FLEXNET7 = ["flexconv.net.no_hidden=24", "flexconv.net.no_blocks=7", "flexconv.net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]"]
FLEXNET5 = ["flexconv.net.no_hidden=22", "flexconv.net.no_blocks=5", "flexconv.net.block_width_factors=[1.0, 1, 1.5, 2, 2.0, 2]"]


# The original's count, layer by layer (rjbruin/flexconv: models/ckresnet.py Img_ResNet,
# models/residual_block.py, ckconv/nn/ckconv.py, ckconv/nn/ck/{mfn,magnet,siren}.py).
# Kernel nets are 1x1 convs with bias; out = C_out * C_in generated channels; hidden 32, 3 layers.
#   MAGNet:  3 hidden linears 3*(32*32+32) = 3168; 4 filters, each linear 2->32 (64+32)
#            + mu (32x2) + gamma (32x2) = 224 -> 896; output 32*out + out = 33*out.
#            => 4064 + 33*out
#   MFN-Gabor: gamma is (32x1): 4 * 32 fewer => 3936 + 33*out
#   SIREN:   2->32 (96) + one hidden 32->32 (1056) + output 33*out => 1152 + 33*out
# CKConv adds its bias (C_out); FlexConv also the mask params [[mu, sigma]] x 2 (4).
# Conv (k): k*k*C_in*C_out + C_out. BatchNorm: 2*C. Shortcut 1x1 with bias when widths differ:
# C_in*C_out + C_out. Output layer: final*classes + classes, final = int(hidden * factors[-2]).
KERNEL_NET = {"MAGNet": 4064, "Gabor": 3936, "SIREN": 1152}


def original_conv_params(conv: str, kernel: str, cin: int, cout: int, k: int = 33) -> int:
    if conv == "Conv":
        return k * k * cin * cout + cout
    per = KERNEL_NET[kernel] + 33 * cin * cout + cout
    return per + (4 if conv == "FlexConv" else 0)


def original_flexnet_params(conv, kernel, hidden, factors, no_blocks, in_ch=3, classes=10, k=33) -> int:
    total = original_conv_params(conv, kernel, in_ch, hidden, k) + 2 * hidden  # stem + BN
    widths = [int(hidden * f) for f in width_factors(factors, no_blocks)]
    for cin, cout in zip([hidden, *widths[:-1]], widths):
        total += original_conv_params(conv, kernel, cin, cout, k) + original_conv_params(conv, kernel, cout, cout, k)
        total += 2 * 2 * cout  # two BatchNorms
        total += (cin * cout + cout) if cin != cout else 0
    final = int(hidden * factors[-2])
    return total + final * classes + classes


F7 = (24, [1.0, 2, 1.5, 3, 2.0, 2], 7)
F5 = (22, [1.0, 1, 1.5, 2, 2.0, 2], 5)

# (overrides, conv, kernel, net, expected): expected worked out by hand from the sums above, e.g.
# FlexNet-7 widths 24,24,36,36,36,48,48: stem 6,468 + BN 48; blocks 46,296 x2, 80,532 (incl.
# shortcut 900), 93,888 x2, 143,256 (shortcut 1,776), 160,488; out 48*10+10 = 490 -> 671,650.
CASES = [
    (FLEXNET7 + ["flexconv.conv.type=FlexConv", "flexconv.kernel.type=MAGNet"], "FlexConv", "MAGNet", F7, 671_650),
    (FLEXNET7 + ["flexconv.conv.type=CKConv", "flexconv.kernel.type=MAGNet"], "CKConv", "MAGNet", F7, 671_650 - 15 * 4),
    (FLEXNET7 + ["flexconv.conv.type=CKConv", "flexconv.kernel.type=SIREN", "flexconv.kernel.omega_0=30.0"], "CKConv", "SIREN", F7, 627_910),
    (FLEXNET7 + ["flexconv.conv.type=FlexConv", "flexconv.kernel.type=SIREN", "flexconv.kernel.omega_0=30.0"], "FlexConv", "SIREN", F7, 627_970),
    (FLEXNET7 + ["flexconv.conv.type=FlexConv", "flexconv.kernel.type=Gabor"], "FlexConv", "Gabor", F7, 669_730),
    (FLEXNET5 + ["flexconv.conv.type=FlexConv", "flexconv.kernel.type=MAGNet"], "FlexConv", "MAGNet", F5, 454_046),
    (FLEXNET7 + ["flexconv.conv.type=Conv", "flexconv.conv.horizon=3"], "Conv", None, F7, 169_990),
]


@pytest.mark.parametrize("overrides, conv, kernel, net, expected", CASES, ids=[
    "flexnet7", "ckcnn-magnet", "ckcnn-siren", "flexnet7-siren", "flexnet7-gabor", "flexnet5", "conv-k3"])
def test_parameter_counts_match_the_original(overrides, conv, kernel, net, expected):
    hidden, factors, blocks = net
    k = 3 if conv == "Conv" else 33
    assert original_flexnet_params(conv, kernel, hidden, factors, blocks, k=k) == expected
    cfg = load_config("flexconv/cifar10-flexnet7", overrides)
    model = build_model(cfg, InputSpec(3, 32, 10))
    assert count_parameters(model) == expected


@pytest.mark.parametrize("kwargs, expected", [
    (dict(horizon="33"), 671_650),
    (dict(horizon="33", conv_type="CKConv", kernel_type="SIREN", kernel_omega_0=30.0), 627_910),
    (dict(horizon="33", kernel_type="Gabor"), 669_730),
    (dict(horizon="33", no_hidden=22, no_blocks=5, block_width_factors=[1.0, 1, 1.5, 2, 2.0, 2]), 454_046),
    (dict(conv_type="Conv", horizon="3"), 169_990),
])
def test_create_model_builds_flexnet_from_plain_keywords(kwargs, expected):
    """No config: the factory's defaults are FlexNet-7 with MAGNet FlexConvs (timm style)."""
    model = create_model("flexnet", in_channels=3, num_classes=10, **kwargs)
    assert count_parameters(model) == expected
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_the_adapter_gives_the_factory_the_configs_values():
    cfg = load_config("flexconv/cifar10-flexnet7", ["flexconv.conv.type=CKConv", "flexconv.mask.init_value=0.1"])
    kwargs = model_kwargs(cfg, InputSpec(3, 32, 10))
    assert (kwargs["in_channels"], kwargs["num_classes"], kwargs["conv_type"], kwargs["horizon"]) == (3, 10, "CKConv", "33")
    assert kwargs["mask_init_value"] == 0.1 and kwargs["no_hidden"] == 24 and kwargs["kernel_type"] == "MAGNet"
    assert count_parameters(create_model("flexnet", **kwargs)) == count_parameters(build_model(cfg, InputSpec(3, 32, 10)))
    with pytest.raises(TypeError):
        create_model("flexnet", no_such_option=1)


def test_flexnet7_anchor_and_imagenet32_flexnet5_head():
    cfg = load_config("flexconv/cifar10-flexnet7")
    assert count_parameters(build_model(cfg, InputSpec(3, 32, 10))) == 671_650
    cfg5 = load_config("flexconv/cifar10-flexnet7", FLEXNET5)
    assert count_parameters(build_model(cfg5, InputSpec(3, 32, 1000))) == 454_046 + 44 * 990 + 990


def test_width_factors_are_read_in_pairs():
    assert width_factors([1.0, 2, 1.5, 3, 2.0, 2], 7) == [1, 1, 1.5, 1.5, 1.5, 2, 2]
    assert width_factors([0.0], 3) == [1, 1, 1]
    with pytest.raises(ValueError):
        width_factors([1.0, 2, 1.5, 3], 7)


@pytest.mark.parametrize("conv_type, extra", [
    ("FlexConv", ["flexconv.conv.horizon=9"]),
    ("CKConv", ["flexconv.conv.horizon=9", "flexconv.kernel.type=SIREN", "flexconv.kernel.omega_0=30.0"]),
    ("Conv", ["flexconv.conv.horizon=3"]),
    ("SRF", []),
])
def test_output_shapes_for_each_conv_type(conv_type, extra):
    torch.manual_seed(0)
    overrides = ["flexconv.net.no_hidden=4", "flexconv.net.no_blocks=2", "flexconv.net.block_width_factors=[1, 1, 2, 1]", "flexconv.net.dropout=0.2",
                 f"flexconv.conv.type={conv_type}", "flexconv.kernel.no_hidden=8", *extra]
    model = build_model(load_config("flexconv/cifar10-flexnet7", overrides), InputSpec(1, 12, 7))
    out = model(torch.randn(2, 1, 12, 12))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    assert model(torch.randn(1, 1, 12, 12)).shape == (1, 7)


def test_preset_resolves_the_seed_command():
    cfg = load_config("flexconv/cifar10-flexnet7")
    assert cfg.model.name == "flexnet" and cfg.paper == "flexconv"
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.batch_size, cfg.train.epochs) == ("Adam", 0.01, 64, 350)
    assert cfg.train.scheduler_params["warmup_epochs"] == 5 and cfg.train.normalize == "imagenet"
    assert (cfg.flexconv.conv.type, cfg.flexconv.conv.horizon, cfg.flexconv.kernel.type, cfg.flexconv.mask.init_value) == ("FlexConv", "33", "MAGNet", 0.075)
    assert (cfg.flexconv.net.dropout, cfg.flexconv.mask.temperature, cfg.flexconv.mask.threshold) == (0.2, 15.0, 0.1)
    # command-line values as in the original's commands
    cfg = load_config("flexconv/cifar10-flexnet7", ["flexconv.conv.horizon=33", "flexconv.conv.use_fft=False", "flexconv.mask.temperature=15"])
    assert cfg.flexconv.conv.horizon == "33" and str(cfg.flexconv.conv.use_fft).lower() == "false"


def test_summary_reports_parameters_and_kernel_sizes(capsys):
    assert cli_main(["summary", "flexconv/cifar10-flexnet7", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["parameters"] == 671_650 and table["output_shape"] == [1, 10]
    assert sum(row["params"] for row in table["layers"]) == 671_650
    convs = [row for row in table["layers"] if row["type"] == "FlexConv"]
    assert len(convs) == 15
    # sigma 0.075 on a 33-point grid: |p| < 2.146 * 0.075 keeps 5 points per axis
    assert {row["kernel_size"] for row in convs} == {"5x5"}
    assert cli_main(["summary", "flexconv/cifar10-flexnet7", "flexconv.conv.type=CKConv", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["parameters"] == 671_590
    assert {row["kernel_size"] for row in table["layers"] if row["type"] == "CKConv"} == {"33x33"}
