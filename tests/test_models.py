"""The CIFAR ResNets: parameter counts of the original, 1- and 3-channel input, summary."""
from __future__ import annotations

import json

import pytest
import torch

from raysys.config import load_config
from raysys.models import MODELS, InputSpec, build_model, create_model
from raysys.models.summary import count_parameters, format_table, summarize
from tests.conftest import run_cli

# akamaster/pytorch_resnet_cifar10, as used by FlexConv (CIFAR-10, 3 channels).
ORIGINAL_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth, params", sorted(ORIGINAL_PARAMS.items()))
def test_cifar_resnet_parameter_counts_match_the_original(depth, params):
    model = create_model(f"cifar_resnet{depth}", in_channels=3, num_classes=10)
    assert count_parameters(model) == params


def test_flexconv_names_are_aliases():
    assert MODELS.canonical("CIFARResNet32") == "cifar_resnet32"


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32), (3, 16)])
def test_cifar_resnet_takes_one_or_three_channels(channels, size):
    cfg = load_config("cifar-resnet/fashion-mnist-resnet20")
    model = build_model(cfg, InputSpec(channels, size, 7))
    assert model(torch.zeros(2, channels, size, size)).shape == (2, 7)


def test_option_a_shortcut_pads_channels_and_subsamples():
    model = create_model("cifar_resnet20", in_channels=3, num_classes=10)
    block = model.layer2[0]
    x = torch.randn(1, 16, 32, 32)
    out = block.shortcut(x)
    assert out.shape == (1, 32, 16, 16)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_summary_lists_layers_and_total():
    model = create_model("cifar_resnet32", in_channels=3, num_classes=10)
    table = summarize(model, [1, 3, 32, 32])
    assert table["parameters"] == 464_154
    assert sum(row["params"] for row in table["layers"]) == 464_154
    assert table["layers"][0]["layer"] == "conv1"
    assert "(0.46M)" in format_table(table)


def test_summary_cli_prints_json(tmp_path):
    result = run_cli("summary", "cifar-resnet/fashion-mnist-resnet20", "model.name=cifar_resnet32", "--json", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    assert table["input_shape"] == [1, 1, 28, 28]  # Fashion-MNIST, before any shards exist
    assert table["parameters"] == 464_154 - 2 * 16 * 9  # one input channel instead of three


def test_a_model_is_built_from_plain_keyword_arguments_without_a_config():
    plain = create_model("cifar_resnet20", in_channels=1, num_classes=7)
    assert plain.linear.out_features == 7 and plain.conv1.in_channels == 1
    from_config = build_model(load_config("cifar-resnet/fashion-mnist-resnet20"), InputSpec(1, 28, 7))
    assert count_parameters(plain) == count_parameters(from_config)
