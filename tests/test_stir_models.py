"""STIR models (raysys/families/stir/models.py) and their scale layers (raysys/families/stir/layers).

The SiConv2d models run 26-29 convolutions with kernels up to 63×63 per
layer (≈13 GFLOP per 64×64 image), so forward passes use batch 1; the
3-channel slice/energy variants, which share pixel_pool's convolutions, are
marked slow.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from raysys.errors import ConfigError
from raysys.families.stir.layers import sesn
from raysys.families.stir.layers.equivariance import PAIRS, crop_object, equivariance_error
from raysys.families.stir.layers.siconv import INTERPOLATIONS, KernelResize, ScalePool, SiConv2d, area_matrix
from raysys.families.stir.models import MODEL_NAMES, scale_counts
from raysys.models import MODELS, InputSpec, build_model

EMOJI = InputSpec(1, 64, 36)
COLOUR = InputSpec(3, 64, 16)
SLOW_COLOUR = {"slice_pool", "energy_pool"}


def cfg_for(name: str, kernel_size: int = 7, interpolation: str = "bicubic"):
    return OmegaConf.create({"model": {"name": f"stir_{name}"},
                             "stir": {"kernel_size": kernel_size, "interpolation": interpolation}})


def build(name: str, spec: InputSpec = EMOJI, **options):
    torch.manual_seed(0)
    return build_model(cfg_for(name, **options), spec)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_all_eleven_models_are_registered():
    assert len(MODEL_NAMES) == 11
    assert all(f"stir_{name}" in MODELS for name in MODEL_NAMES)


_SHAPE_CASES = [pytest.param(name, spec, id=f"{name}-{spec.channels}ch",
                             marks=[pytest.mark.slow] if spec is COLOUR and name in SLOW_COLOUR else [])
                for spec in (EMOJI, COLOUR) for name in MODEL_NAMES]


@pytest.mark.parametrize("name,spec", _SHAPE_CASES)
def test_output_shape_on_64px_inputs(name, spec):
    model = build(name, spec).eval()
    with torch.no_grad():
        out = model(torch.rand(1, spec.channels, 64, 64))
    assert out.shape == (1, spec.num_classes)
    assert torch.isfinite(out).all()


def _standard_count(c: int, n: int, k: int) -> int:
    return (c * 16 * k * k + 16) + (16 * 32 * k * k + 32) + (32 * n + n)


@pytest.mark.parametrize("k", [3, 7])
@pytest.mark.parametrize("spec", [EMOJI, COLOUR], ids=["1ch", "3ch"])
def test_parameter_counts_follow_the_original_architectures(spec, k):
    c, n = spec.channels, spec.num_classes
    standard = _standard_count(c, n, k)
    stn = (c * 16 * 9 + 16) + (16 * 16 * 9 + 16) + (16 * 16 * 16 * 16 + 16) + (16 * 6 + 6)
    expected = {
        "standard": standard, "pixel_pool": standard, "slice_pool": standard, "energy_pool": standard,
        "kanazawa": standard, "hermite": standard, "disco": standard, "ensemble": standard,
        "conv3d": standard - (16 * 32 * k * k) + 16 * 32 * k**3,
        "xu": standard - 16 - 32,  # XuConv2d has no bias
        "spatial_transform": standard + stn,
    }
    for name in MODEL_NAMES:
        assert n_params(build(name, spec, kernel_size=k)) == expected[name], name
    assert _standard_count(1, 36, 7) == 27108  # the paper's emoji setting


def test_siconv_models_use_the_original_scale_counts():
    assert scale_counts(64, 7) == (29, 26)
    model = build("pixel_pool")
    assert (model.conv1.num_scales, model.conv2.num_scales) == (29, 26)
    assert [r.target_size for r in model.conv1.resize][-1] == 7 + 2 * 28
    assert set(model.state_dict()) >= {"conv1.weights", "conv1.bias", "conv2.weights", "lin.weight"}


def test_bad_model_options_are_config_errors():
    with pytest.raises(ConfigError, match="stir.kernel_size=5"):
        build("standard", kernel_size=5)
    with pytest.raises(ConfigError, match="stir.interpolation"):
        build("pixel_pool", interpolation="lanczos")
    with pytest.raises(ConfigError, match="DISCO"):
        build("disco", kernel_size=11)


# ---- interpolation -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", INTERPOLATIONS)
def test_kernel_resize_keeps_the_response_to_a_flat_input(mode):
    # The k²/t² gain makes an enlarged constant kernel sum to the same total.
    resize = KernelResize(7, 13, mode)
    out = resize(torch.ones(2, 3, 7, 7))
    assert out.shape == (2, 3, 13, 13)
    torch.testing.assert_close(out.sum(dim=(2, 3)), torch.full((2, 3), 49.0))


def test_interpolation_modes_give_different_kernels_and_area_averages():
    weight = torch.randn(4, 2, 7, 7)
    kernels = {mode: KernelResize(7, 11, mode)(weight) for mode in INTERPOLATIONS}
    for a in INTERPOLATIONS:
        for b in INTERPOLATIONS:
            if a < b:
                assert not torch.allclose(kernels[a], kernels[b]), (a, b)
    # Area enlargement to an integer multiple is pixel replication.
    torch.testing.assert_close(KernelResize(7, 14, "area")(weight) * 4,
                               F.interpolate(weight, size=(14, 14), mode="nearest"))
    matrix = area_matrix(7, 11)
    torch.testing.assert_close(matrix.sum(dim=1), torch.ones(11))
    torch.testing.assert_close(matrix.sum(dim=0), torch.full((7,), 11 / 7))


def test_interpolation_option_reaches_the_layers():
    model = build("slice_pool", interpolation="area")
    assert {r.mode for r in model.conv1.resize} == {"area"}
    assert {r.mode for r in build("pixel_pool").conv2.resize} == {"bicubic"}


def test_siconv_scales_are_aligned_and_zero_outside_their_valid_region():
    torch.manual_seed(0)
    layer = SiConv2d(1, 2, 5, 3, "bilinear")
    x = torch.rand(1, 1, 11, 11)
    out = layer(x)
    assert out.shape == (1, 2, 5, 9, 9)
    torch.testing.assert_close(out[:, :, 0], F.conv2d(x, layer.weights, layer.bias))  # scale 0: k×k as is
    torch.testing.assert_close(out[:, :, 1, 1:-1, 1:-1], F.conv2d(x, layer.kernels()[1], layer.bias))
    assert (out[:, :, 4, :, :4] == 0).all() and (out[:, :, 4, 4, 4] != 0).all()
    with pytest.raises(ValueError, match="needs 4 scales"):
        layer(torch.rand(1, 1, 10, 10))


# ---- scale pooling -----------------------------------------------------------------------


def test_scale_pool_indices_are_exposed():
    x = torch.zeros(1, 2, 3, 4, 4)
    x[0, 0, 1, 0, 0] = 5.0   # channel 0: global max at scale 1 ...
    x[0, 0, 2] = 1.0         # ... but scale 2 has the most energy
    x[0, 1, 0, 2, 2] = 3.0   # channel 1: everything at scale 0
    pixel, slice_, energy = ScalePool("pixel"), ScalePool("slice"), ScalePool("energy")
    assert torch.equal(pixel(x), x.amax(dim=2))
    assert pixel.indices.shape == (1, 2, 4, 4) and pixel.indices[0, 0, 0, 0] == 1 and pixel.indices[0, 0, 3, 3] == 2
    assert torch.equal(slice_(x)[0, 0], x[0, 0, 1]) and slice_.indices.tolist() == [[1, 0]]
    assert torch.equal(energy(x)[0, 0], x[0, 0, 2]) and energy.indices.tolist() == [[2, 0]]
    with pytest.raises(ConfigError):
        ScalePool("mean")


def test_model_pool_indices_after_a_forward():
    model = build("energy_pool", kernel_size=15)
    with torch.no_grad():
        model(torch.rand(2, 1, 64, 64))
    s1, s2 = scale_counts(64, 15)
    assert model.pool1.indices.shape == (2, 16) and int(model.pool1.indices.max()) < s1
    assert model.pool2.indices.shape == (2, 32) and int(model.pool2.indices.max()) < s2


# ---- equivariance ------------------------------------------------------------------------


def _emoji_at(scales, names=("tired", "smile-beam", "grin", "angry")):
    from pipelines.stir.emoji import emoji_svgs, render_coverage

    svgs = emoji_svgs("fontawesome6")  # offline everywhere (a PyPI requirement)
    images = []
    for name in names:
        svg = svgs[name]
        for s in scales:
            canvas = np.zeros((64, 64), np.float32)
            canvas[:s, :s] = render_coverage(svg, s) / 255.0
            images.append(canvas)
    return torch.tensor(np.stack(images))[:, None], len(names)


def test_siconv_pixel_pool_is_closer_to_equivariant_than_a_plain_conv():
    # Same weights: the plain conv is SiConv2d's first scale. Error as the original's
    # eval: object crops at the six scale pairs, bicubic resize, relative squared error.
    scales = sorted({s for pair in PAIRS for s in pair}, reverse=True)
    images, count = _emoji_at(scales)
    torch.manual_seed(0)
    layer, pool = SiConv2d(1, 16, 29, 7, "bicubic"), ScalePool("pixel")
    with torch.no_grad():
        scale_eq = torch.relu(pool(layer(images)))
        plain = torch.relu(F.conv2d(images, layer.weights, layer.bias))
    errors = {"siconv": [], "plain": []}
    for key, maps in (("siconv", scale_eq), ("plain", plain)):
        for icon in range(count):
            at = {s: maps[icon * len(scales) + i] for i, s in enumerate(scales)}
            for ref, other in PAIRS:
                errors[key].append(equivariance_error(crop_object(at[ref], ref, 0, 0),
                                                      crop_object(at[other], other, 0, 0)))
    assert np.mean(errors["siconv"]) < 0.7 * np.mean(errors["plain"])


def test_crop_follows_the_feature_map_offset():
    fmap = torch.arange(58 * 58.0).view(1, 58, 58)
    assert crop_object(fmap, 20, 3, 5).shape == (1, 14, 14)
    assert crop_object(fmap, 20, 3, 5)[0, 0, 0] == fmap[0, 5, 3]
    assert equivariance_error(fmap[:, :10, :10], fmap[:, :10, :10]) == 0.0


# ---- SESN bases --------------------------------------------------------------------------


def test_hermite_polynomials_match_numpy():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    for order in range(6):
        expected = np.polynomial.hermite_e.hermeval(x.numpy(), [0] * order + [1])
        np.testing.assert_allclose(sesn.hermite_e(x, order).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_hermite_basis_shape_and_normalisation():
    basis = sesn.hermite_basis(15, (2.0, 2.52, 3.17, 4.0), 7, 1.5, 4)
    assert basis.shape == (49, 4, 15, 15)
    torch.testing.assert_close(basis[:, 0].pow(2).sum(dim=(1, 2)), torch.ones(49))
    # The smallest scale lives on a 7×7 grid (15·2/4 -> 7), zero-padded.
    assert basis[:, 0, :4].abs().max() == 0 and basis[:, 3, :4].abs().max() > 0


def test_disco_basis_is_computed_in_memory_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the original read a .pt relative to the working directory
    scales = (1.0, 1.26, 1.59, 2.0)
    proxy = sesn.disco_proxy_basis(15, scales, 7)
    assert proxy.shape == (49, 4, 15, 15) and list(tmp_path.iterdir()) == []
    torch.testing.assert_close(proxy[:, 0], sesn.dilated_standard_basis(15, 7, 1))
    torch.testing.assert_close(proxy[:, 3], sesn.dilated_standard_basis(15, 7, 2))
    assert proxy[:, 3].sum(dim=(1, 2)).eq(1).all() and proxy[0, 3, 1, 1] == 1  # one-hot, step 2
    fitted = sesn.disco_proxy_basis.__wrapped__(15, scales, 7)
    torch.testing.assert_close(fitted, proxy)
    basis = sesn.disco_basis(15, scales, 7, 1.9, 4, 1.9)
    assert basis.shape == (49, 4, 15, 15) and torch.isfinite(basis).all()


@pytest.mark.slow
def test_bench_stir_quick_times_models_against_standard(tmp_path):
    from raysys.bench.runner import run_benchmark

    result = run_benchmark("stir", quick=True, workdir=str(tmp_path),
                           overrides=["models=xu,kanazawa"]).to_json()
    assert set(result["figures"]) == {"standard", "xu", "kanazawa"}
    assert set(result["ratios"]) == {"xu/standard", "kanazawa/standard"}
    assert all(f["unit"] == "s/epoch" for f in result["figures"].values())


# ---- factories (plain keyword arguments) and the config adapter ---------------------------


def test_factories_build_without_a_config_as_the_adapter_does():
    from raysys.models import create_model, model_kwargs

    torch.manual_seed(0)
    direct = create_model("stir_disco", in_channels=1, num_classes=36, kernel_size=7)
    assert n_params(direct) == _standard_count(1, 36, 7)
    cfg = cfg_for("pixel_pool", kernel_size=3, interpolation="area")
    assert model_kwargs(cfg, EMOJI) == dict(in_channels=1, num_classes=36, kernel_size=3, interpolation="area", size=64)
    assert model_kwargs(cfg_for("standard"), COLOUR) == dict(in_channels=3, num_classes=16, kernel_size=7)
    assert model_kwargs(cfg_for("disco"), EMOJI)["basis_file"] is None  # no stir.disco_basis: computed
    for name in MODEL_NAMES:
        kwargs = model_kwargs(cfg_for(name), EMOJI)
        assert n_params(create_model(f"stir_{name}", **kwargs)) == n_params(build(name)), name
    with pytest.raises(ConfigError, match="stir.kernel_size=5"):
        create_model("stir_xu", in_channels=1, num_classes=2, kernel_size=5)


# ---- the original's DISCO basis file and checkpoints -------------------------------------


def _original_style_state(model) -> dict:
    """``model``'s state dict with the persistent ``<conv>.basis.basis`` buffers the original saved."""
    state = dict(model.state_dict())
    for conv in ("conv1", "conv2"):
        state[f"{conv}.basis.basis"] = getattr(model, conv).basis.basis.clone()
    return state


@pytest.mark.parametrize("name", ["hermite", "disco"])
def test_original_sesn_checkpoints_load_with_their_basis(name):
    source = build(name)
    state = _original_style_state(source)
    state["conv1.basis.basis"] = state["conv1.basis.basis"] * 2  # a basis unlike the computed one
    target = build(name)
    target.load_state_dict(state)  # strict
    torch.testing.assert_close(target.conv1.basis.basis, state["conv1.basis.basis"])
    assert "conv1.basis.basis" not in target.state_dict()  # raysys's own checkpoints leave it out
    small = build(name, kernel_size=3)
    with pytest.raises(RuntimeError, match="basis"):
        small.load_state_dict(_original_style_state(build(name)), strict=False)


def test_disco_basis_file_is_used_and_checked(tmp_path):
    from raysys.models import create_model, model_kwargs

    scales = (1.0, 1.26, 1.59, 2.0)
    proxy = sesn.disco_proxy_basis(15, scales, 7).float() * 0.5 + 0.01
    path = tmp_path / "size=15_eff_size=7_scales=[1.0, 1.26, 1.59, 2.0].pt"
    torch.save(proxy, path)
    model = create_model("stir_disco", in_channels=1, num_classes=36, basis_file=str(path))
    torch.testing.assert_close(model.conv1.basis.basis, sesn.disco_basis(15, scales, 7, 1.9, 4, 1.9, proxy.double()))
    assert not torch.allclose(model.conv1.basis.basis, build("disco").conv1.basis.basis)
    cfg = OmegaConf.merge(cfg_for("disco"), {"stir": {"disco_basis": str(path)}})
    assert model_kwargs(cfg, EMOJI)["basis_file"] == str(path)
    torch.save(proxy[:, :3], tmp_path / "short.pt")
    for bad, message in ((tmp_path / "missing.pt", "no such file"), (tmp_path / "short.pt", "expected a tensor"),
                         (tmp_path, "not a torch tensor file")):
        with pytest.raises(ConfigError, match=f"stir.disco_basis=.*{message}"):
            create_model("stir_disco", in_channels=1, num_classes=36, basis_file=str(bad))
