"""MIMOConv models: binding, bundling, capacity rule, regularisers, parameter counts."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from raysys.config.schema import root_schema
from raysys.errors import ConfigError
from raysys.families.mimoconv.models import DEPTHS, FAMILIES, SuperWideNet
from raysys.models.registry import MODELS, InputSpec, build_model
from raysys.families.mimoconv.layers.binding import (
    BINDINGS, HRRBinding, MBATBinding, circular_convolve, circular_correlate, hrr_key_regularization,
)
from raysys.families.mimoconv.layers.isometry import isometry_penalty

NAMES = ["WideResNet-16", "WideResNet-28", "WideISOReLUNet-16", "WideISOReLUNet-28", "WideISONet-16",
         "WideISONet-28", "MIMONet-10", "MIMONet-16", "MIMONet-28"]


def make_cfg(name: str, **sections):
    cfg = OmegaConf.structured(root_schema())
    cfg.model.name = name
    for dotted, value in sections.items():
        OmegaConf.update(cfg, dotted.replace("__", "."), value)
    return cfg


def small(name="MIMONet", depth=10, binding="HRR", capacity=4, **kw):
    family = FAMILIES[name]
    kw = {"width": 1, "initial_width": 1, **kw}
    return SuperWideNet(DEPTHS[depth], 10, 3, activation=family.activation, isometric=family.isometric,
                        binding=binding, capacity=capacity, **kw)


def unitary_keys(count: int, channels: int, generator: torch.Generator) -> torch.Tensor:
    """Real keys whose spectrum has modulus 1 everywhere: HRR binding is then orthogonal."""
    phases = torch.rand(count, channels // 2 + 1, generator=generator) * 2 * math.pi
    spectrum = torch.polar(torch.ones_like(phases), phases)
    spectrum[:, 0] = 1.0
    spectrum[:, -1] = -1.0
    return torch.fft.irfft(spectrum, n=channels, dim=-1)


def original_conv1d_bind(keys: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The original's HRR bind: grouped Conv1d (kernel C, circular pad C/2) per pixel, index 0 dropped."""
    b, n, c, h, w = x.shape
    rows = x.permute(0, 3, 4, 1, 2).reshape(-1, n, c)
    out = F.conv1d(F.pad(rows, (c // 2, c // 2), mode="circular"), keys.unsqueeze(1), groups=n)[:, :, 1:]
    return out.reshape(b, h, w, n, c).permute(0, 3, 4, 1, 2)


# ---- binding --------------------------------------------------------------------------------

def test_hrr_binding_is_the_originals_circular_conv_and_a_circular_correlation():
    torch.manual_seed(0)
    binding = HRRBinding(3, 8)
    assert binding.keys.abs().max() <= 1 / math.sqrt(8)  # Conv1d's default init, as the original
    x = torch.randn(2, 3, 8, 4, 5)
    bound = binding.bind(x)
    torch.testing.assert_close(bound, original_conv1d_bind(binding.keys, x), rtol=1e-5, atol=1e-5)
    as_rows = x.permute(0, 3, 4, 1, 2)  # channels last
    expected = circular_correlate(as_rows, binding.effective_keys()).permute(0, 3, 4, 1, 2)
    torch.testing.assert_close(bound, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("binding_name", ["None", "HRR", "MBAT"])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_fused_bundle_equals_repeat_bind_and_sum(binding_name, n):
    torch.manual_seed(1)
    binding = BINDINGS.get(binding_name)(4, 6)
    x = torch.randn(8, 6, 3, 3)
    grouped = x.reshape(8 // n, n, 6, 3, 3).repeat(1, 4 // n, 1, 1, 1)  # the original's repeat
    expected = binding.bind(grouped).sum(1)
    torch.testing.assert_close(binding(x, n), expected, rtol=1e-5, atol=1e-5)


def test_hrr_unbinding_recovers_a_bound_vector_with_orthogonal_keys():
    gen = torch.Generator().manual_seed(2)
    channels, count, vectors = 256, 4, 64
    binding = HRRBinding(count, channels)
    keys = unitary_keys(count, channels, gen)
    with torch.no_grad():  # store them so that the effective (rolled) keys are unitary
        binding.keys.copy_(torch.roll(keys, channels // 2 - 1, dims=1))
    torch.testing.assert_close(binding.effective_keys(), keys)
    x = torch.randn(vectors, count, channels, 1, 1, generator=gen)
    with torch.no_grad():
        bound = binding.bind(x)[..., 0, 0]  # (V, N, C)
    # one vector: exact recovery
    torch.testing.assert_close(circular_convolve(bound[:, 0], keys[0]), x[:, 0, :, 0, 0], atol=1e-4, rtol=1e-4)
    # a bundle of N: the other N-1 bound vectors add noise of their full (unchanged) norm
    bundle = bound.sum(1)
    recovered = circular_convolve(bundle, keys[0])
    target = x[:, 0, :, 0, 0]
    noise = (recovered - target).pow(2).sum(-1)
    expected_noise = x[:, 1:, :, 0, 0].pow(2).sum((-1, -2))
    assert (noise.mean() / expected_noise.mean()).item() == pytest.approx(1.0, abs=0.1)
    cosine = F.cosine_similarity(recovered, target, dim=-1).mean()
    assert cosine.item() == pytest.approx(1 / math.sqrt(count), abs=0.06)
    unrelated = F.cosine_similarity(recovered, torch.randn(vectors, channels, generator=gen), dim=-1).abs().mean()
    assert unrelated < 0.1


def test_mbat_binding_shape_and_invertibility():
    torch.manual_seed(3)
    binding = MBATBinding(4, 16)
    assert binding.weight.shape == (4, 16, 16)
    assert binding.weight.std().item() == pytest.approx(math.sqrt(2 / (4 * 16)), rel=0.15)
    x = torch.randn(2, 4, 16, 3, 3)
    bound = binding.bind(x)
    assert bound.shape == x.shape
    matrices = binding.matrices()
    assert torch.linalg.matrix_rank(matrices).tolist() == [16] * 4
    rows = bound.permute(0, 1, 3, 4, 2).unsqueeze(-1)  # (B, N, H, W, C, 1)
    solved = torch.linalg.solve(matrices[None, :, None, None], rows).squeeze(-1).permute(0, 1, 4, 2, 3)
    torch.testing.assert_close(solved, x, atol=1e-3, rtol=1e-3)


def test_binding_regularization_formula():
    keys = torch.tensor([[1.0, 0, 0, 0], [1.0, 1.0, 0, 0]])
    keys[1] /= math.sqrt(2)
    # unit norms; cosine 1/sqrt(2): 0.5 over N(N-1)/2 = 1 pair
    assert hrr_key_regularization(keys).item() == pytest.approx(0.5)
    keys = torch.tensor([[2.0, 0, 0, 0], [0, 3.0, 0, 0]])
    # orthogonal; norm deviations 1 and 2: (1 + 4) / N
    assert hrr_key_regularization(keys).item() == pytest.approx(2.5)
    assert hrr_key_regularization(torch.tensor([[0.5, 0.0]])).item() == pytest.approx(0.25)
    model = small(binding="HRR", capacity=2)
    with torch.no_grad():
        model.binding.keys.copy_(torch.eye(2, 16) * torch.tensor([[2.0], [3.0]]))
    assert model.binding_regularization().item() == pytest.approx(2.5)
    for name in ("MBAT", "None"):
        assert small(binding=name, capacity=2).binding_regularization().item() == 0.0


# ---- capacity and the N' rule ---------------------------------------------------------------

def test_capacity_two_runs_at_one_and_two_with_the_same_weights():
    torch.manual_seed(4)
    model = small(capacity=2).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(6, 3, 16, 16)
    assert model.capacity == 2 and model.superposition == 2
    with torch.no_grad():
        at_two = model(x)
        model.set_superposition(1)
        at_one = model(x)
        alone = model(x[:1])
        model.set_superposition(2)
        paired_differently = model(torch.cat([x[:1], x[2:3]]))
    assert at_two.shape == at_one.shape == (6, 10)
    assert model.superposition == 2
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # n=1: each image alone (repeated into both slots), so its logits ignore the batch
    torch.testing.assert_close(alone, at_one[:1])
    # n=2: an image shares its bundle, so its logits depend on its partner
    assert not torch.allclose(paired_differently[:1], at_two[:1])
    assert not torch.allclose(at_one, at_two)


def test_a_superposition_that_does_not_divide_the_capacity_is_refused():
    model = small(capacity=4)
    with pytest.raises(ConfigError) as err:
        model.set_superposition(3)
    message = str(err.value)
    assert "\n" not in message and "3" in message and "[1, 2, 4]" in message
    assert model.superposition == 4
    with pytest.raises(ConfigError, match=r"sup_low=3 .*capacity=4"):
        build_model(make_cfg("MIMONet-10", mimo__width=1, superposition__capacity=4, superposition__sup_low=3),
                    InputSpec(3, 32, 10))


def test_batch_not_divisible_is_cut_as_the_original():
    model = small(capacity=4).eval()
    with torch.no_grad():
        assert model(torch.randn(6, 3, 16, 16)).shape == (4, 10)


def test_gradients_reach_keys_and_unbinding():
    model = small(capacity=2)
    model(torch.randn(4, 3, 16, 16)).sum().backward()
    assert model.binding.keys.grad.abs().sum() > 0
    assert model.unbind.weight.grad.abs().sum() > 0


# ---- parameter counts -----------------------------------------------------------------------

def original_parameter_count(name, depth, width, initial_width, binding, capacity, classes=10, in_channels=3):
    """The original's arithmetic: stem, pre-activation blocks (with alpha), keys, unbinding, fc."""
    stem = 16 * initial_width
    has_activation_params = name in ("WideISONet", "MIMONet")
    total = in_channels * stem * 9 + 2 * stem
    channels = stem
    for stage in range(3):
        planes = 16 * width * 2 ** stage
        for i in range(DEPTHS[depth][stage]):
            inp = channels if i == 0 else planes
            total += 2 * inp + inp * planes * 9 + 2 * planes + planes * planes * 9 + 1
            if has_activation_params:
                total += inp + planes
            if i == 0 and (stage > 0 or inp != planes):
                total += inp * planes + 2 * planes
        channels = planes
    features = 64 * width
    total += {"None": 0, "HRR": capacity * stem, "MBAT": capacity * stem * stem}[binding]
    if binding != "None" or capacity > 1:
        total += features * capacity * features + capacity * features
    return total + features * classes + classes


# counted on the original code (IBM/multiple-input-multiple-output-nets, models/*.py)
ORIGINAL_COUNTS = [
    ("WideResNet", 28, 10, 1, "None", 1, 10, 36_480_198),
    ("WideResNet", 28, 10, 1, "None", 1, 100, 36_537_888),
    ("WideResNet", 16, 8, 1, "None", 1, 10, 10_962_176),
    ("WideISOReLUNet", 28, 10, 1, "None", 1, 10, 36_480_198),
    ("WideISONet", 28, 10, 1, "None", 1, 10, 36_488_534),
    ("MIMONet", 28, 10, 4, "HRR", 1, 10, 36_977_174),
    ("MIMONet", 28, 10, 4, "HRR", 2, 10, 37_387_478),
    ("MIMONet", 28, 10, 4, "HRR", 4, 10, 38_208_086),
    ("MIMONet", 28, 10, 4, "HRR", 4, 100, 38_265_776),
    ("MIMONet", 28, 10, 4, "MBAT", 4, 10, 38_224_214),
    ("MIMONet", 16, 4, 4, "HRR", 4, 10, 3_042_320),
    ("MIMONet", 10, 1, 1, "HRR", 2, 10, 86_477),
]


@pytest.mark.parametrize("name,depth,width,initial_width,binding,capacity,classes,expected", ORIGINAL_COUNTS)
def test_parameter_counts_equal_the_original(name, depth, width, initial_width, binding, capacity, classes, expected):
    cfg = make_cfg(f"{name}-{depth}", mimo__width=width, mimo__initial_width=initial_width,
                   superposition__binding=binding, superposition__capacity=capacity)
    with torch.device("meta"):
        model = build_model(cfg, InputSpec(3, 32, classes))
    assert sum(p.numel() for p in model.parameters()) == expected
    assert original_parameter_count(name, depth, width, initial_width, binding, capacity, classes) == expected


def test_alpha_is_frozen_without_skip_init_and_trained_with_it():
    plain, skip = small(), small(skip_init=True)
    assert not any(block.alpha.requires_grad for block in plain._blocks)
    assert all(block.alpha.requires_grad for block in skip._blocks)
    assert plain.mean_abs_alpha() is None and skip.mean_abs_alpha() == 0.0
    x = torch.randn(4, 16, 8, 8)
    with torch.no_grad():  # alpha = 0: a block starts as its shortcut
        torch.testing.assert_close(skip.layer1[0](x), x)
        assert not torch.allclose(plain.layer1[0](x), x)


# ---- isometry -------------------------------------------------------------------------------

def test_isometry_penalty_is_zero_for_orthogonal_and_dirac_convs_and_positive_otherwise():
    torch.manual_seed(5)
    ortho = nn.Conv2d(8, 8, 1, bias=False)
    nn.init.orthogonal_(ortho.weight)
    assert isometry_penalty(ortho).item() < 1e-10
    for cin, cout, stride in ((8, 8, 1), (4, 8, 2), (8, 4, 1)):
        dirac = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        nn.init.dirac_(dirac.weight)
        assert isometry_penalty(dirac).item() == 0.0
        assert isometry_penalty(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)).item() > 0.01


def test_model_isometry_regularization():
    dirac = small(dirac_init=True)
    assert dirac.isometry_regularization().item() < 1e-10
    default = small()
    value = default.isometry_regularization()
    assert value.item() > 1.0 and value.dtype == torch.float32
    value.backward()
    assert default.layer1[0].conv1.weight.grad is not None
    wrn = small("WideResNet", 16, binding="None", capacity=1)
    assert wrn.isometry_regularization().item() == 0.0
    # every block conv and shortcut conv, not the stem or the unbinding conv
    assert len(default.isometric_convs()) == 3 * 2 + 2 + (1 if default.layer1[0].downsample is not None else 0)


# ---- options --------------------------------------------------------------------------------

def test_every_model_name_is_registered():
    for name in NAMES:
        assert name in MODELS
    assert "WideResNet-10" not in MODELS


def test_activation_parameters_and_their_defaults():
    mimo, iso, relu = small("MIMONet"), small("WideISONet", 16), small("WideISOReLUNet", 16)
    assert all(isinstance(p, nn.Parameter) for p in mimo.activation_parameters())
    assert len(mimo.activation_parameters()) == 2 * 3
    assert mimo.mean_relu_parameter() == pytest.approx(0.5)
    assert iso.mean_relu_parameter() == pytest.approx(-1.0)
    assert relu.activation_parameters() == [] and relu.mean_relu_parameter() == 0.0
    assert small("MIMONet", relu_parameter_init=0.25).mean_relu_parameter() == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="relu_parameter_init"):
        small("WideResNet", 16, binding="None", capacity=1, relu_parameter_init=0.25)
    with pytest.raises(ConfigError, match="dirac_init"):
        small("WideResNet", 16, binding="None", capacity=1, dirac_init=True)


def test_batch_norm_disabled_and_frozen_keys():
    model = small(batch_norm_disabled=True, trainable_keys=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not model.binding.keys.requires_grad
    cfg = make_cfg("MIMONet-10", mimo__width=1, mimo__batch_norm_disabled=True, mimo__trainable_keys_disabled=True,
                   superposition__binding="MBAT", superposition__capacity=2)
    built = build_model(cfg, InputSpec(1, 28, 10))
    assert not built.binding.weight.requires_grad
    assert built(torch.randn(4, 1, 28, 28)).shape == (4, 10)


def test_iso_init_fix_and_the_legacy_option():
    torch.manual_seed(6)
    fan_out = 32 * 9
    fixed = small(width=2).layer1[0].conv2.weight.std().item()
    legacy = small(width=2, legacy_iso_init=True).layer1[0].conv2.weight.std().item()
    assert fixed == pytest.approx(math.sqrt(2 / (1.25 * fan_out)), rel=0.05)  # leaky ReLU, slope 0.5
    assert legacy == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)  # what the original ran with


def test_summary_runs_on_a_mimonet():
    from raysys.models.summary import summarize

    summary = summarize(small(capacity=2), [4, 3, 32, 32])
    assert summary["output_shape"] == [4, 10]
    layers = {row["layer"] for row in summary["layers"]}
    assert {"conv1", "binding", "unbind", "fc"} <= layers


def test_summary_cli_feeds_a_full_bundle_and_reports_the_total(capsys):
    import json

    from raysys.cli.main import main as cli_main

    overrides = ["model.name=MIMONet-10", "mimo.width=1", "superposition.binding=HRR", "superposition.capacity=2"]
    assert cli_main(["summary", "cifar-resnet/fashion-mnist-resnet20", *overrides, "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["input_shape"] == [2, 1, 28, 28] and table["output_shape"] == [2, 10]
    # the three alphas are frozen without SkipInit: in the total, not in the trainable count
    assert table["total_parameters"] == original_parameter_count("MIMONet", 10, 1, 1, "HRR", 2, in_channels=1)
    assert table["parameters"] == table["total_parameters"] - 3


# ---- bench mimo -----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 4])
def test_bench_reference_binding_is_the_fused_binding(n):
    from raysys.bench.mimo import original_hrr_bundle

    torch.manual_seed(7)
    binding = HRRBinding(4, 16)
    x = torch.randn(8, 16, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(original_hrr_bundle(binding.keys, x, n), binding(x, n), rtol=1e-5, atol=1e-5)


def test_bench_mimo_quick_runs_every_superposition_on_one_model():
    from raysys.bench.runner import run_benchmark

    result = run_benchmark("mimo", quick=True, overrides=["batch=4", "repeats=1", "warmup=0"]).to_json()
    assert {"n1", "n2", "n4", "hrr_bundle_n4.fused", "hrr_bundle_n4.original_conv1d"} <= set(result["figures"])
    assert result["ratios"]["n4/n1"]["goal"] == ">= 2.5"
    assert all(v > 0 for name in ("n1", "n2", "n4") for v in result["figures"][name]["values"])


# ---- original checkpoints -------------------------------------------------------------------

def test_original_checkpoint_names_round_trip_and_load(tmp_path):
    from raysys.errors import CheckpointError
    from raysys.families.mimoconv.models.original_weights import load_original_weights, to_original_state_dict

    torch.manual_seed(8)
    source = small("WideISONet", 16, binding="HRR", capacity=2).eval()
    original = to_original_state_dict(source.state_dict())
    assert original["channelConv.weight"].shape == (2, 1, 16)
    assert "unbind.0.weight" in original and "layer1.0.relu1.srelu_bias" in original
    path = tmp_path / "Experiment0_model.pt"
    torch.save({"model_state_dict": original, "epoch": 0}, path)
    target = small("WideISONet", 16, binding="HRR", capacity=2).eval()
    load_original_weights(target, str(path))
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_original_weights(small("WideISONet", 16, binding="HRR", capacity=4), str(path))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_original_weights(small("MIMONet", 10, binding="HRR", capacity=2), str(path))
