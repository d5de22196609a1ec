"""FlexNet: the original's parameter counts, output shapes per conv.type, config, summary."""
from __future__ import annotations

import json

import pytest
import torch

from raysys.cli.main import main as cli_main
from raysys.config import load_config
from raysys.models import InputSpec, build_model
from raysys.families.flexconv.models import width_factors
from raysys.models.summary import count_parameters

FLEXNET7 = ["net.no_hidden=24", "net.no_blocks=7", "net.block_width_factors=[1.0, 2, 1.5, 3, 2.0, 2]"]
FLEXNET5 = ["net.no_hidden=22", "net.no_blocks=5", "net.block_width_factors=[1.0, 1, 1.5, 2, 2.0, 2]"]


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
    (FLEXNET7 + ["conv.type=FlexConv", "kernel.type=MAGNet"], "FlexConv", "MAGNet", F7, 671_650),
    (FLEXNET7 + ["conv.type=CKConv", "kernel.type=MAGNet"], "CKConv", "MAGNet", F7, 671_650 - 15 * 4),
    (FLEXNET7 + ["conv.type=CKConv", "kernel.type=SIREN", "kernel.omega_0=30.0"], "CKConv", "SIREN", F7, 627_910),
    (FLEXNET7 + ["conv.type=FlexConv", "kernel.type=SIREN", "kernel.omega_0=30.0"], "FlexConv", "SIREN", F7, 627_970),
    (FLEXNET7 + ["conv.type=FlexConv", "kernel.type=Gabor"], "FlexConv", "Gabor", F7, 669_730),
    (FLEXNET5 + ["conv.type=FlexConv", "kernel.type=MAGNet"], "FlexConv", "MAGNet", F5, 454_046),
    (FLEXNET7 + ["conv.type=Conv", "conv.horizon=3"], "Conv", None, F7, 169_990),
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
    ("FlexConv", ["conv.horizon=9"]),
    ("CKConv", ["conv.horizon=9", "kernel.type=SIREN", "kernel.omega_0=30.0"]),
    ("Conv", ["conv.horizon=3"]),
    ("SRF", []),
])
def test_output_shapes_for_each_conv_type(conv_type, extra):
    torch.manual_seed(0)
    overrides = ["net.no_hidden=4", "net.no_blocks=2", "net.block_width_factors=[1, 1, 2, 1]", "net.dropout=0.2",
                 f"conv.type={conv_type}", "kernel.no_hidden=8", *extra]
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
    assert (cfg.conv.type, cfg.conv.horizon, cfg.kernel.type, cfg.mask.init_value) == ("FlexConv", "33", "MAGNet", 0.075)
    assert (cfg.net.dropout, cfg.mask.temperature, cfg.mask.threshold) == (0.2, 15.0, 0.1)
    # command-line values as in the original's commands
    cfg = load_config("flexconv/cifar10-flexnet7", ["conv.horizon=33", "conv.use_fft=False", "mask.temperature=15"])
    assert cfg.conv.horizon == "33" and str(cfg.conv.use_fft).lower() == "false"


def test_summary_reports_parameters_and_kernel_sizes(capsys):
    assert cli_main(["summary", "flexconv/cifar10-flexnet7", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["parameters"] == 671_650 and table["output_shape"] == [1, 10]
    assert sum(row["params"] for row in table["layers"]) == 671_650
    convs = [row for row in table["layers"] if row["type"] == "FlexConv"]
    assert len(convs) == 15
    # sigma 0.075 on a 33-point grid: |p| < 2.146 * 0.075 keeps 5 points per axis
    assert {row["kernel_size"] for row in convs} == {"5x5"}
    assert cli_main(["summary", "flexconv/cifar10-flexnet7", "conv.type=CKConv", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["parameters"] == 671_590
    assert {row["kernel_size"] for row in table["layers"] if row["type"] == "CKConv"} == {"33x33"}
