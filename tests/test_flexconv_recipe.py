"""The FlexConv recipe: param groups, kernel-L2 "weight_decay", aliasing regularizer, phases, statistics."""
from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from omegaconf import OmegaConf

from raysys.config import load_config
from raysys.errors import ConfigError
from raysys.models import InputSpec, build_model
from raysys.families.flexconv.layers.ckconv import CKConv, FlexConv
from raysys.train import phases as run_phases
from raysys.train.optim import build_optimizer
from raysys.train.recipes import build_recipe
from raysys.families.flexconv import aliasing
from raysys.families.flexconv.recipe import continuous_layers, set_resolution

TINY = ["flexconv.net.no_hidden=8", "flexconv.net.no_blocks=2", "flexconv.net.block_width_factors=[1.0, 1, 1.5, 1]",
        "flexconv.kernel.no_hidden=8", "flexconv.conv.horizon=17", "data.resize=16"]
SPEC = InputSpec(3, 16, 10)


@functools.lru_cache(maxsize=None)
def base_config(*overrides: str):
    return load_config("flexconv/cifar10-flexnet7", list(overrides))


def configured(*extra: str, base=TINY):
    """The preset with ``base`` overrides (loaded once) plus ``extra`` set on a copy (load_config is slow)."""
    cfg = copy.deepcopy(base_config(*base))
    for item in extra:
        key, value = item.split("=", 1)
        OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
    return cfg


def tiny(*extra: str):
    cfg = configured(*extra)
    torch.manual_seed(0)
    return cfg, build_model(cfg, SPEC), build_recipe(cfg)


def test_mask_params_get_their_own_lr_and_the_optimizer_no_weight_decay():
    cfg, model, recipe = tiny("train.lr=0.01", "train.mask_params_lr_factor=0.1", "train.weight_decay=1e-5")
    optimizer = build_optimizer(cfg, recipe.param_groups(model), recipe.optimizer_weight_decay())
    assert isinstance(optimizer, torch.optim.Adam)
    masks = {id(m.mask_params) for m in model.modules() if isinstance(m, FlexConv)}
    assert len(masks) == 5  # stem + 2 blocks x 2
    by_lr = {}
    for group in optimizer.param_groups:
        assert group["weight_decay"] == 0.0  # weight_decay is the kernel L2 loss, not Adam's
        by_lr.setdefault(round(group["lr"], 12), set()).update(id(p) for p in group["params"])
    assert by_lr[0.001] == masks
    assert by_lr[0.01] == {id(p) for p in model.parameters()} - masks


def test_learnable_omega_0_gets_its_lr_factor():
    cfg, model, recipe = tiny("flexconv.kernel.type=SIREN", "flexconv.kernel.omega_0=30.0",
                              "flexconv.kernel.learn_omega_0=true",
                              "train.omega_0_lr_factor=0.5", "train.lr=0.001")
    optimizer = build_optimizer(cfg, recipe.param_groups(model), 0.0)
    omegas = {id(p) for n, p in model.named_parameters() if n.endswith("omega_0")}
    assert omegas
    groups = {round(g["lr"], 12): {id(p) for p in g["params"]} for g in optimizer.param_groups}
    assert groups[0.0005] == omegas


def test_kernel_l2_loss_is_the_sum_of_kernel_and_bias_norms():
    cfg, model, recipe = tiny("train.weight_decay=0.01")
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 2])
    out = model(x)
    loss, extras = recipe.loss(model, out, y)
    by_hand = 0.0
    for layer in model.modules():
        if isinstance(layer, CKConv):
            kernel = layer.compute_kernel().detach()
            by_hand += math.sqrt(float((kernel ** 2).sum())) + math.sqrt(float((layer.bias.detach() ** 2).sum()))
    assert float(extras["kernel_l2"].detach()) == pytest.approx(by_hand, rel=1e-5)
    assert float(loss) == pytest.approx(float(F.cross_entropy(out, y)) + 0.01 * by_hand, rel=1e-5)
    loss.backward()  # the kernel term reaches the generator and the mask
    assert any(m.mask_params.grad is not None and m.mask_params.grad.abs().sum() > 0
               for m in model.modules() if isinstance(m, FlexConv))
    no_wd = tiny("train.weight_decay=0")[2]
    assert "kernel_l2" not in no_wd.loss(model, model(x), y)[1]


REG = ["flexconv.kernel.regularize=true", "flexconv.kernel.regularize_params.factor=0.1",
       "flexconv.kernel.regularize_params.method=together", "flexconv.kernel.regularize_params.gauss_stddevs=2.0"]


def by_hand_frequencies(layer, stddevs=2.0, with_mask=False):
    freqs = []
    for f in layer.Kernel.filters:
        sines = f.linear.weight.detach().abs().max() / (2 * math.pi)
        gausses = stddevs * f.gamma.detach().abs().max() / (2 * math.pi)
        freqs.append(float(sines + gausses))
    if with_mask:
        sigma = layer.mask_params.detach()[:, 1].abs()
        freqs = [v + stddevs * float((1 / sigma).max()) / (2 * math.pi) / len(freqs) for v in freqs]
    return freqs


@pytest.mark.parametrize("target", ["gabor", "gabor+mask"])
def test_regularizer_matches_a_hand_computation_at_the_phase_resolution(target):
    cfg, model, recipe = tiny(*REG, f"flexconv.kernel.regularize_params.target={target}")
    recipe.on_phase_start(model, run_phases.Phase("train", 1, 16), 16)
    assert recipe.regularization_res() == 17  # the phase's side + 1: Nyquist (17 - 1) / 2 * 0.5 = 4
    nyquist = 4.0 / 4  # shared by the L + 1 = 4 filters
    by_hand = sum(max(0.0, f - nyquist) ** 2
                  for layer in continuous_layers(model) for f in by_hand_frequencies(layer, with_mask=target == "gabor+mask"))
    assert by_hand > 0  # MAGNet at init (input scale 25.6) is far above 1 cycle per unit
    value = aliasing.aliasing_loss(model, cfg.flexconv.kernel.regularize_params, 17)
    assert float(value) == pytest.approx(0.1 * by_hand, rel=1e-5)
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    out = model(x)
    loss, extras = recipe.loss(model, out, y)
    assert float(extras["gabor_reg"]) == pytest.approx(float(value), rel=1e-6)
    assert float(loss) == pytest.approx(float(F.cross_entropy(out, y) + value), rel=1e-5)
    # A finer phase raises the Nyquist limit and lowers the penalty; a fine enough grid zeroes it.
    recipe.on_phase_start(model, run_phases.Phase("finetune", 1, 32), 32)
    assert recipe.regularization_res() == 33
    finer = float(recipe.loss(model, model(torch.randn(2, 3, 32, 32)), y)[1]["gabor_reg"])
    assert 0 < finer < float(value)
    huge = max(max(by_hand_frequencies(layer, with_mask=True)) for layer in continuous_layers(model)) * 4 * 4 + 3
    assert float(aliasing.aliasing_loss(model, cfg.flexconv.kernel.regularize_params, int(huge))) == 0.0


def test_regularizer_res_zero_no_longer_penalises_everything():
    # The original's run_experiment.py used res=0: Nyquist -0.25, every frequency penalised.
    cfg, model, recipe = tiny(*REG, "flexconv.kernel.regularize_params.target=gabor")
    recipe.on_phase_start(model, run_phases.Phase("train", 1, 0), 16)
    assert cfg.flexconv.kernel.regularize_params.res == 0 and recipe.regularization_res() == 17
    pinned = tiny(*REG, "flexconv.kernel.regularize_params.res=65", "flexconv.kernel.regularize_params.res_offset=2")[2]
    pinned.on_phase_start(model, run_phases.Phase("train", 1, 0), 16)
    assert pinned.regularization_res() == 67


def test_regularizer_keys_are_checked_by_name():
    with pytest.raises(ConfigError, match="flexconv.kernel.regularize_params.target"):
        load_config("flexconv/cifar10-flexnet7", ["flexconv.kernel.regularize_params.target=sines"])
    cfg, model, recipe = tiny(*REG, "flexconv.kernel.type=SIREN", "flexconv.kernel.omega_0=30.0")
    with pytest.raises(ConfigError, match="flexconv.kernel.type=MAGNet or Gabor"):
        aliasing.aliasing_loss(model, cfg.flexconv.kernel.regularize_params, 17)


def test_regenerating_kernels_on_a_finer_grid_keeps_the_continuous_kernel():
    torch.manual_seed(0)
    layer = FlexConv(2, 3, 17, mask_init_value=0.3, mask_dynamic_cropping=False)
    coarse = layer.compute_kernel().detach()  # 17 x 17 on [-1, 1]
    set_resolution(layer, 33, (16 / 32) ** 2)
    fine = layer.compute_kernel().detach()
    assert fine.shape[-2:] == (33, 33)
    # Every other sample of the 33-grid is the 17-grid; the amplitude is scaled by (16/32)^2.
    torch.testing.assert_close(fine[..., ::2, ::2], coarse * 0.25, rtol=1e-4, atol=1e-6)
    assert int(layer.train_length[0]) == 33


def test_cross_res_phases_and_their_checks():
    cfg = configured("cross_res.source_res=16", "cross_res.target_res=32", "cross_res.finetune_epochs=3",
                     "train.epochs=2", base=())
    phases = build_recipe(cfg).phases()
    assert [(p.name, p.epochs, p.resolution, p.eval_on_start) for p in phases] == [
        ("source", 2, 16, ""), ("finetune", 3, 32, "ootb")]
    assert [run_phases.locate(phases, e) for e in range(5)] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert [run_phases.ends_phase(phases, e) for e in range(5)] == [False, True, False, False, True]
    finetune_cfg = run_phases.phase_config(cfg, phases[1])
    assert finetune_cfg.train.epochs == 3 and finetune_cfg.train.lr == cfg.train.lr
    assert run_phases.phase_config(cfg, phases[0]) is cfg
    assert [p.epochs for p in build_recipe(base_config()).phases()] == [350]
    for bad, message in [("cross_res.source_res=15", "must be even"), ("cross_res.target_res=16", "must differ"),
                         ("cross_res.finetune_epochs=0", "at least 1")]:
        with pytest.raises(ConfigError, match=message):
            build_recipe(configured("cross_res.source_res=16", "cross_res.target_res=32", bad, base=())).phases()


def test_cross_res_phase_start_sets_grid_and_sampling_rate():
    cfg, model, recipe = tiny("cross_res.source_res=16", "cross_res.target_res=32")
    source, target = recipe.phases()
    recipe.on_phase_start(model, source, 16)
    assert {(int(m.train_length[0]), m.kernel_sampling_rate_norm) for m in continuous_layers(model)} == {(17, 1.0)}
    recipe.on_phase_start(model, target, 32)
    assert {(int(m.train_length[0]), m.kernel_sampling_rate_norm) for m in continuous_layers(model)} == {(33, 0.25)}
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_epoch_metrics_report_kernel_sizes_masks_and_frequencies():
    cfg, model, recipe = tiny(*REG, "flexconv.kernel.regularize_params.target=gabor+mask")
    recipe.on_phase_start(model, recipe.phases()[0], 16)
    with torch.no_grad():
        model.cconv1.mask_params[1, 1] = 0.5  # a wider x mask in the stem
    metrics = recipe.on_train_epoch_end(model, 0)
    assert metrics["mask_sigma_x_l00"] == pytest.approx(0.5) and metrics["mask_sigma_y_l00"] == pytest.approx(0.075)
    assert metrics["kernel_size_w_l00"] > metrics["kernel_size_h_l00"] == metrics["kernel_size_l01"]
    assert metrics["kernel_size_l00"] == metrics["kernel_size_w_l00"] == 17  # 2.146 * 0.5 > 1: the whole grid
    assert metrics["gabor_freq_l00"] == pytest.approx(max(by_hand_frequencies(model.cconv1, with_mask=True)), rel=1e-5)
    assert metrics["nyquist_l00"] == pytest.approx(1.0)
    assert {k.rsplit("_l", 1)[1] for k in metrics} == {f"{i:02d}" for i in range(5)}
    plain = tiny()[2]
    assert not any(k.startswith("gabor_freq") for k in plain.on_train_epoch_end(model, 0))
