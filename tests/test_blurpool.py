"""BlurPool: binomial taps, padding, output shapes, tiny maps (original issue #47), shift behaviour."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from raysys.families.antialiased.blurpool import BlurConv2d, BlurPool, binomial_taps, blur_kernel, pad_sizes

# The original's taps (antialiased_cnns/blurpool.py, originals.md §3).
ORIGINAL_TAPS = {
    1: [1],
    2: [1, 1],
    3: [1, 2, 1],
    4: [1, 3, 3, 1],
    5: [1, 4, 6, 4, 1],
    6: [1, 5, 10, 10, 5, 1],
    7: [1, 6, 15, 20, 15, 6, 1],
}
PAD_TYPES = ("reflect", "replicate", "zero")


@pytest.mark.parametrize("size", sorted(ORIGINAL_TAPS))
def test_taps_are_the_originals_binomial_rows(size):
    assert binomial_taps(size).tolist() == ORIGINAL_TAPS[size]
    taps = torch.tensor(ORIGINAL_TAPS[size], dtype=torch.float64)
    expected = torch.outer(taps, taps) / taps.sum() ** 2
    kernel = blur_kernel(size)
    assert kernel.dtype == torch.float32
    assert torch.equal(kernel.double(), expected)  # exact: integer taps over a power of two
    assert kernel.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("size, pads", [(1, (0, 0, 0, 0)), (2, (0, 1, 0, 1)), (3, (1, 1, 1, 1)), (4, (1, 2, 1, 2)), (7, (3, 3, 3, 3))])
def test_padding_is_floor_then_ceil_of_half_the_filter(size, pads):
    assert pad_sizes(size) == pads
    assert pad_sizes(size, pad_off=1) == tuple(p + 1 for p in pads)


@pytest.mark.parametrize("pad_type", PAD_TYPES)
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size", range(1, 8))
def test_output_side_is_ceil_of_input_over_stride(size, stride, pad_type):
    layer = BlurPool(4, pad_type=pad_type, filt_size=size, stride=stride)
    x = torch.randn(2, 4, 11, 8)
    assert layer(x).shape == (2, 4, math.ceil(11 / stride), math.ceil(8 / stride))


def test_impulse_response_is_the_filter():
    layer = BlurPool(1, pad_type="zero", filt_size=3, stride=1)
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    expected = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
    out = layer(x)[0, 0]
    assert torch.equal(out[1:4, 1:4], expected)
    assert out.sum().item() == pytest.approx(1.0)


def test_filter_size_one_is_plain_subsampling():
    x = torch.randn(1, 3, 9, 7)
    assert torch.equal(BlurPool(3, filt_size=1, stride=3)(x), x[:, :, ::3, ::3])


@pytest.mark.parametrize("pad_type", ["reflect", "replicate"])
@pytest.mark.parametrize("size", range(1, 8))
def test_constant_maps_stay_constant(size, pad_type):
    x = torch.full((1, 2, 6, 6), 3.5)
    assert torch.allclose(BlurPool(2, pad_type=pad_type, filt_size=size)(x), torch.full((1, 2, 3, 3), 3.5))


def test_pad_types_differ_at_the_border_as_named():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    reflect, replicate, zero = (BlurPool(1, pad_type=p, filt_size=3, stride=1)(x) for p in PAD_TYPES)
    kernel = blur_kernel(3)[None, None]
    for mode, out in (("reflect", reflect), ("replicate", replicate), ("constant", zero)):
        assert torch.allclose(out, F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), kernel))
    assert not torch.allclose(reflect, replicate) and not torch.allclose(replicate, zero)
    # "refl"/"repl": the original's short spellings.
    assert torch.equal(BlurPool(1, pad_type="refl", filt_size=3, stride=1)(x), reflect)
    assert torch.equal(BlurPool(1, pad_type="repl", filt_size=3, stride=1)(x), replicate)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("side", [1, 2, 3])
@pytest.mark.parametrize("size", range(1, 8))
def test_tiny_maps_with_reflect_padding_do_not_crash(size, side, stride):
    """Original issue #47: ReflectionPad2d fails when a pad is >= the side it pads."""
    x = torch.randn(2, 3, side, side)
    out = BlurPool(3, pad_type="reflect", filt_size=size, stride=stride)(x)
    assert out.shape == (2, 3, math.ceil(side / stride), math.ceil(side / stride))
    assert torch.isfinite(out).all()
    left, right, _, _ = pad_sizes(size)
    if max(left, right) >= side:  # too small to reflect: exactly replicate padding
        expected = BlurPool(3, pad_type="replicate", filt_size=size, stride=stride)(x)
        assert torch.equal(out, expected)
    else:
        kernel = blur_kernel(size).expand(3, 1, size, size)
        expected = F.conv2d(F.pad(x, (left, right, left, right), mode="reflect"), kernel, stride=stride, groups=3)
        assert torch.allclose(out, expected)


def test_fallback_is_per_side():
    """A 2x8 map with f=4: rows cannot reflect (pad 2 >= 2) and are replicated; columns still reflect."""
    x = torch.randn(1, 1, 2, 8)
    out = BlurPool(1, pad_type="reflect", filt_size=4, stride=1)(x)
    padded = F.pad(F.pad(x, (1, 2, 0, 0), mode="reflect"), (0, 0, 1, 2), mode="replicate")
    assert torch.allclose(out, F.conv2d(padded, blur_kernel(4)[None, None]))


def test_one_by_one_maps_through_every_pad_type():
    x = torch.randn(1, 2, 1, 1)
    for pad_type in PAD_TYPES:
        out = BlurPool(2, pad_type=pad_type, filt_size=7, stride=2)(x)
        assert out.shape == (1, 2, 1, 1)
    assert torch.allclose(BlurPool(2, pad_type="reflect", filt_size=7)(x), x)  # replicate of one pixel


def test_filter_is_a_non_persistent_buffer():
    layer = BlurPool(5, filt_size=4)
    assert list(layer.parameters()) == []
    assert layer.state_dict() == {}
    assert dict(layer.named_buffers())["filt"].shape == (5, 1, 4, 4)
    layer.load_state_dict({}, strict=True)
    double = layer.to(torch.float64)
    assert double.filt.dtype == torch.float64
    assert double(torch.randn(1, 5, 8, 8, dtype=torch.float64)).dtype == torch.float64


def test_gradients_flow_through():
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    BlurPool(2, filt_size=3)(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kwargs", [{"filt_size": 0}, {"filt_size": 8}, {"pad_type": "circular"}, {"stride": 0}, {"pad_off": -1}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        BlurPool(2, **kwargs)


def test_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match="expects 2 channels"):
        BlurPool(2)(torch.randn(1, 3, 8, 8))


def test_blur_conv_shares_the_conv_parameters_and_keys():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, bias=True)
    blurred = BlurConv2d.from_conv(conv, blur_stride=2, filt_size=3)
    assert isinstance(blurred, torch.nn.Conv2d)
    assert blurred.weight is conv.weight and blurred.bias is conv.bias
    assert list(blurred.state_dict()) == list(conv.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 4, 10, 10)
    expected = conv(BlurPool(4, filt_size=3, stride=2)(x))
    assert torch.allclose(blurred(x), expected)
    assert blurred(x).shape == (2, 6, 5, 5)


def test_blurring_makes_subsampling_less_sensitive_to_a_one_pixel_shift():
    """White noise, 1-pixel shift, stride 2: plain subsampling changes every output
    (relative change ~sqrt(2)); the [1,3,3,1] filter halves that (~sqrt(1/2))."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 128, 128, generator=g)
    shifted = torch.roll(x, shifts=1, dims=3)

    def relative_change(layer):
        a, b = layer(x), layer(shifted)
        return ((a - b).norm() / a.norm()).item()

    plain = relative_change(BlurPool(1, filt_size=1, stride=2, pad_type="replicate"))
    blurred = relative_change(BlurPool(1, filt_size=4, stride=2, pad_type="replicate"))
    assert plain == pytest.approx(math.sqrt(2), rel=0.05)
    assert blurred == pytest.approx(math.sqrt(0.5), rel=0.05)
    assert blurred < 0.6 * plain


def test_channels_last_gives_the_same_result():
    layer = BlurPool(8, filt_size=5, stride=2)
    x = torch.randn(2, 8, 13, 13)
    expected = layer(x)
    cl = layer.to(memory_format=torch.channels_last)
    assert torch.allclose(cl(x.to(memory_format=torch.channels_last)), expected, atol=1e-6)
