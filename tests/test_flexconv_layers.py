"""FlexConv layers: kernel generators, CKConv/FlexConv, the FFT path and N-Jet (SRF)."""
from __future__ import annotations

import collections
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from raysys.families.flexconv.layers.ckconv import (
    CKConv, FlexConv, cropped_size, gaussian_extent, parse_horizon, rel_positions_grid,
)
from raysys.families.flexconv.layers.fftconv import conv2d_same, direct_conv2d, fft_conv2d, parse_use_fft, use_fft_for
from raysys.families.flexconv.layers.kernels import SIREN, GaborNet, MAGNet
from raysys.families.flexconv.layers.srf import SRFConv2d, gaussian_derivative_basis, hermite


def _rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# -- FFT convolution ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, c, o, h, w, kh, kw",
    [
        (2, 3, 4, 32, 32, 33, 33),  # CIFAR with a full 33x33 kernel
        (1, 5, 2, 31, 17, 15, 9),  # odd, non-square input and kernel
        (2, 2, 3, 8, 9, 5, 5),  # even / odd input sides
        (1, 4, 4, 16, 16, 4, 6),  # even kernel sides: torch's asymmetric "same"
        (1, 3, 2, 10, 10, 21, 21),  # kernel larger than the input
        (3, 1, 1, 7, 12, 3, 3),
    ],
)
def test_fft_and_direct_paths_agree(n, c, o, h, w, kh, kw):
    torch.manual_seed(0)
    x, weight, bias = torch.randn(n, c, h, w), torch.randn(o, c, kh, kw), torch.randn(o)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # even kernels: torch pads a copy
        reference = F.conv2d(x, weight, bias, padding="same")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert _rel_error(direct_conv2d(x, weight, bias), reference) < 1e-6
    out = fft_conv2d(x, weight, bias)
    assert out.shape == reference.shape and out.dtype == torch.float32
    assert _rel_error(out, reference) <= 1e-4


def test_fft_path_gradients_match_the_direct_path():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 11, requires_grad=True)
    weight = torch.randn(4, 3, 7, 7, requires_grad=True)
    grads = []
    for conv in (direct_conv2d, fft_conv2d):
        x.grad = weight.grad = None
        (conv(x, weight) ** 2).sum().backward()
        grads.append((x.grad.clone(), weight.grad.clone()))
    assert _rel_error(grads[1][0], grads[0][0]) <= 1e-4
    assert _rel_error(grads[1][1], grads[0][1]) <= 1e-4


def test_fft_path_selection_is_automatic_and_forceable():
    assert use_fft_for((33, 33), "auto") and use_fft_for((15, 21), "auto")
    assert not use_fft_for((5, 5), "auto") and not use_fft_for((33, 7), "auto")
    assert use_fft_for((3, 3), "true") and use_fft_for((3, 3), True)
    assert not use_fft_for((51, 51), "false") and not use_fft_for((51, 51), "False")
    assert use_fft_for((9, 9), "auto", fft_min_kernel=9)
    assert parse_use_fft(False) == "false" and parse_use_fft("AUTO") == "auto"
    with pytest.raises(ValueError):
        parse_use_fft("sometimes")
    x, weight = torch.randn(1, 2, 9, 9), torch.randn(3, 2, 5, 5)
    assert _rel_error(conv2d_same(x, weight, use_fft="true"), conv2d_same(x, weight, use_fft="false")) <= 1e-4


# -- kernel generators -------------------------------------------------------------------



def _ops_of_a_training_step(use_fft: str) -> collections.Counter:
    """(op, input shapes) -> count of one FlexConv forward + backward at the initial mask size."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    conv = FlexConv(3, 4, horizon=33, conv_use_fft=use_fft)  # sigma 0.075: a 5x5 kernel
    x = torch.randn(2, 3, 16, 16)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        conv(x).square().mean().backward()
    assert conv.last_kernel.shape[-2:] == (5, 5)
    return collections.Counter({(e.key, str(e.input_shapes)): e.count
                                for e in prof.key_averages(group_by_input_shape=True)})


def test_auto_path_runs_exactly_the_direct_ops_below_the_fft_size():
    # "auto" must cost nothing over "false" for small kernels: no extra op, sync or copy.
    assert _ops_of_a_training_step("auto") == _ops_of_a_training_step("false")
    assert _ops_of_a_training_step("auto") != _ops_of_a_training_step("true")

def test_magnet_and_gabor_initialisation():
    torch.manual_seed(0)
    magnet = MAGNet(2, 6, hidden=32, no_layers=3, input_scale=25.6, init_spatial_value=0.125)
    assert len(magnet.filters) == 4 and len(magnet.linear) == 3
    for layer, filt in enumerate(magnet.filters):
        assert filt.gamma.shape == (32, 2)  # anisotropic
        assert filt.input_scale == pytest.approx(12.8)  # 25.6 / sqrt(3 + 1)
        assert float(filt.mu.detach().abs().max()) <= 0.125
        assert float(filt.linear.bias.detach().abs().max()) <= math.pi
        # default 1x1 init (bound 1/sqrt(fan_in=2)) times input_scale * gamma
        bound = 12.8 * filt.gamma.detach().view(32, 2, 1, 1) / math.sqrt(2)
        assert bool((filt.linear.weight.abs() <= bound + 1e-6).all())
    for lin in magnet.linear:
        assert float(lin.weight.detach().abs().max()) <= math.sqrt(1 / 32)
    # Gamma(6 / (l + 1), 1): the mean precision falls with the layer index
    torch.manual_seed(1)
    big = MAGNet(2, 1, hidden=4000, no_layers=3)
    means = [float(f.gamma.mean()) for f in big.filters]
    assert means == pytest.approx([6.0, 3.0, 2.0, 1.5], rel=0.05)
    gabor = GaborNet(2, 6, hidden=32, no_layers=3)
    assert all(f.gamma.shape == (32, 1) for f in gabor.filters)  # isotropic


def test_siren_initialisation_and_omega_0():
    torch.manual_seed(0)
    siren = SIREN(2, 6, hidden=32, no_layers=3, omega_0=30.0)
    convs = [m for m in siren.kernel_net if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3
    assert float(convs[0].weight.abs().max()) <= 1 / 2
    for conv in convs[1:]:
        assert float(conv.weight.abs().max()) <= math.sqrt(6 / 32) / 30
    assert float(convs[0].omega_0) == 30.0 and "omega_0" in dict(convs[0].named_buffers())
    learned = SIREN(2, 6, omega_0=30.0, learn_omega_0=True)
    assert any(name.endswith("omega_0") for name, _ in learned.named_parameters())


@pytest.mark.parametrize("kernel_type", ["MAGNet", "Gabor", "SIREN"])
def test_kernels_are_continuous_functions_of_position(kernel_type):
    """Sampling a finer grid (65 instead of 33 points) keeps the function at shared positions."""
    torch.manual_seed(0)
    conv = CKConv(3, 2, horizon=33, kernel_type=kernel_type, kernel_omega_0=30.0, kernel_init_spatial_value=0.125)
    coarse = conv.generate(rel_positions_grid((33, 33)))
    fine = conv.generate(rel_positions_grid((65, 65)))
    assert coarse.shape == (2, 3, 33, 33) and fine.shape == (2, 3, 65, 65)
    torch.testing.assert_close(fine[..., ::2, ::2], coarse, rtol=1e-4, atol=1e-4)


# -- CKConv / FlexConv -------------------------------------------------------------------


def test_flexconv_mask_init_and_buffers():
    conv = FlexConv(2, 3, horizon=33, mask_init_value=0.075, mask_temperature=15.0)
    assert conv.mask_params.tolist() == [[0.0, pytest.approx(0.075)], [0.0, pytest.approx(0.075)]]
    assert float(conv.temperature) == 15.0 and float(conv.mask_threshold) == pytest.approx(0.1)
    # a Gaussian mask initialises the generator on 1.667 * init_value = 0.125
    assert all(float(f.mu.detach().abs().max()) <= 1.667 * 0.075 for f in conv.Kernel.filters)
    assert {"train_length", "temperature", "mask_threshold"} <= set(conv.state_dict())
    with pytest.raises(NotImplementedError):
        FlexConv(2, 3, horizon=33, mask_type="sigmoid")


def test_gradients_reach_the_mask_and_the_kernel_net():
    torch.manual_seed(0)
    conv = FlexConv(3, 4, horizon=17, mask_init_value=0.3)
    out = conv(torch.randn(2, 3, 17, 17))
    (out ** 2).mean().backward()
    assert conv.mask_params.grad is not None and float(conv.mask_params.grad[:, 1].abs().min()) > 0
    for name, param in conv.Kernel.named_parameters():
        assert param.grad is not None and float(param.grad.abs().sum()) > 0, name
    assert conv.bias.grad is not None
    assert conv.last_kernel is not None and conv.last_kernel.shape[:2] == (4, 3)


def test_cropping_threshold_and_growth_with_sigma():
    assert gaussian_extent(0.0, 1.0, 0.1) == pytest.approx(2.1460, abs=1e-4)
    assert gaussian_extent(0.1, -0.2, 0.1) == pytest.approx(0.1 + 0.2 * 2.1460, abs=1e-4)
    conv = FlexConv(2, 2, horizon=33, mask_init_value=0.075)
    sizes = []
    for sigma in (0.075, 0.15, 0.3, 0.4, 0.45, 0.6):
        with torch.no_grad():
            conv.mask_params[:, 1] = sigma
        conv(torch.randn(1, 2, 20, 20))
        sizes.append(conv.last_kernel.shape[-1])
        assert conv.summary_info() == {"kernel_size": f"{sizes[-1]}x{sizes[-1]}"}
    # grid step 1/16: |p| < 2.146 sigma -> 0.161: 5, 0.322: 11, 0.644: 21, 0.858: 27, 0.966: 31, >1: 33
    assert sizes == [5, 11, 21, 27, 31, 33]
    assert sizes == sorted(sizes)
    # per-axis cropping: a non-square kernel
    with torch.no_grad():
        conv.mask_params.copy_(torch.tensor([[0.0, 0.075], [0.0, 0.3]]))
    assert conv(torch.randn(1, 2, 20, 20)).shape == (1, 2, 20, 20)
    assert conv.last_kernel.shape[-2:] == (5, 21)
    # no cropping: the full horizon
    uncropped = FlexConv(2, 2, horizon=33, mask_dynamic_cropping=False)
    uncropped(torch.randn(1, 2, 8, 8))
    assert uncropped.last_kernel.shape[-2:] == (33, 33)
    assert cropped_size(33, 0.0) == 1


def test_cropped_kernel_equals_the_full_masked_kernel_where_kept():
    torch.manual_seed(0)
    conv = FlexConv(2, 3, horizon=33, mask_init_value=0.2)
    cropped = conv.compute_kernel()
    conv.mask_dynamic_cropping = False
    full = conv.compute_kernel()
    h, w = cropped.shape[-2:]
    top, left = (33 - h) // 2, (33 - w) // 2
    torch.testing.assert_close(full[..., top:top + h, left:left + w], cropped)
    # the kept positions are exactly those where the 1D mask reaches the threshold
    axis = torch.linspace(-1, 1, 33)
    mask_1d = torch.exp(-0.5 * (axis / 0.2) ** 2)
    kept = torch.zeros(33, dtype=torch.bool)
    kept[top:top + h] = True
    assert bool((mask_1d[kept] > 0.1).all()) and bool((mask_1d[~kept] <= 0.1).all())


def test_horizon_same_takes_the_input_width_once():
    conv = CKConv(1, 1, horizon="same")
    assert conv.summary_info() == {"kernel_size": "same"}
    conv(torch.randn(1, 1, 13, 13))
    assert conv.summary_info() == {"kernel_size": "13x13"} and int(conv.train_length) == 13
    conv(torch.randn(1, 1, 21, 21))  # the grid stays as first set (as in the original)
    assert conv.last_kernel.shape[-2:] == (13, 13)
    assert parse_horizon("33") == 33 and parse_horizon(" same ") == "same"
    for bad in ("32", "full", 0, "x"):
        with pytest.raises(ValueError):
            parse_horizon(bad)


def test_ckconv_fft_and_direct_outputs_agree():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    conv = CKConv(3, 4, horizon=33, conv_use_fft="false")
    direct = conv(x)
    conv.use_fft = "true"
    assert _rel_error(conv(x), direct) <= 1e-4


def test_flexconv_survives_deepcopy_after_forward():
    import copy

    conv = FlexConv(1, 1, horizon=9)
    conv(torch.randn(1, 1, 9, 9))
    clone = copy.deepcopy(conv)
    assert clone.last_kernel is None and torch.equal(clone.mask_params, conv.mask_params)


# -- N-Jet / SRF -------------------------------------------------------------------------


def test_hermite_polynomials():
    x = torch.tensor([0.0, 0.5, -1.3, 2.0])
    torch.testing.assert_close(hermite(x, 0), torch.ones(4))
    torch.testing.assert_close(hermite(x, 3), 8 * x ** 3 - 12 * x)
    torch.testing.assert_close(hermite(x, 4), 16 * x ** 4 - 48 * x ** 2 + 12)


def test_gaussian_derivative_basis_matches_analytic_derivatives():
    sigma = torch.tensor(1.5, dtype=torch.float64)
    x = torch.arange(-5, 6, dtype=torch.float64)
    basis = gaussian_derivative_basis(x, sigma, 4)  # (i, j) for i = 0..4, j = 4 - i..0
    assert basis.shape == (15, 11, 11)
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    torch.testing.assert_close(basis[4], torch.outer(g, g))  # (i, j) = (0, 0) is the 5th
    d1 = -x / sigma ** 2 * g  # first derivative
    d2 = (x ** 2 / sigma ** 4 - 1 / sigma ** 2) * g
    torch.testing.assert_close(basis[3], torch.outer(g, sigma * d1))  # (0, 1)
    torch.testing.assert_close(basis[7], torch.outer(sigma * d1, sigma * d1))  # (1, 1)
    torch.testing.assert_close(basis[11], torch.outer(sigma ** 2 * d2, g))  # (2, 0)


def test_srf_layer_size_params_and_gradients():
    torch.manual_seed(0)
    layer = SRFConv2d(3, 5)
    assert sum(p.numel() for p in layer.parameters()) == 15 * 3 * 5 + 1
    assert layer.summary_info() == {"kernel_size": "7x7"}  # sigma 1: ceil(2 + 0.5) = 3
    out = layer(torch.randn(2, 3, 12, 12))
    assert out.shape == (2, 5, 12, 12)
    out.pow(2).mean().backward()
    assert float(layer.scales.grad.abs()) > 0 and float(layer.alphas.grad.abs().sum()) > 0
    with torch.no_grad():
        layer.scales.fill_(1.0)  # sigma 2: ceil(4.5) = 5
    assert layer.compute_kernel().shape == (5, 3, 11, 11)
