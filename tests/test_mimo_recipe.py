"""MIMOConv recipe pieces: gradient skipping, mixup, superposition sampling, the
45k/5k split, batch padding, and the legacy translation of every seed 002 command."""
from __future__ import annotations

import re
import shlex

import pytest
import torch

from raysys.config import load_config
from raysys.data.holdout import holdout_indices
from raysys.errors import ConfigError
from raysys.families.mimoconv.evaluators import install_batch_padding, mode_rows, modes
from raysys.legacy import translate
from raysys.models import InputSpec, build_model
from raysys.families.mimoconv.grad_skip import GradientSkipRule
from raysys.families.mimoconv.mixup import mixup, sample_lambda
from raysys.train.recipes import build_recipe

# The 18 commands of seed 002's README, verbatim ($RUN set to 0).
SEED_COMMANDS = [
    'python src/train_superposition.py -f -e 200 -x 0 -r 1 --width 10 --initial_width 1 WideResNet-28 CIFAR10 None 1',
    'python src/train_superposition.py -f -e 200 -x 0 -r 1 --width 10 --initial_width 1 WideResNet-28 CIFAR100 None 1',
    'python src/train_superposition.py -f -e 1200 -x 1 -r 0 --width 10 --initial_width 1 WideISOReLUNet-28 CIFAR10 None 1',
    'python src/train_superposition.py -f -e 1200 -x 1 -r 0 --width 10 --initial_width 1 WideISOReLUNet-28 CIFAR100 None 1',
    'python src/train_superposition.py -f -e 1200 -f -x 2 -r 1 --width 10 --initial_width 4 MIMONet-28 CIFAR10 HRR 1',
    'python src/train_superposition.py -f -e 1200 -f -x 2 -r 1 --width 10 --initial_width 4 MIMONet-28 CIFAR100 HRR 1',
    'python src/train_superposition.py -f -e 1200 -f -x 3 -r 1 --width 10 --initial_width 4 MIMONet-28 CIFAR10 HRR 2',
    'python src/train_superposition.py -f -e 1200 -f -x 3 -r 1 --width 10 --initial_width 4 MIMONet-28 CIFAR100 HRR 2',
    'python src/train_superposition.py -f -e 1200 -f -x 4 -r 1 --width 10 --initial_width 4 MIMONet-28 CIFAR10 HRR 4',
    'python src/train_superposition.py -f -e 1200 -f -x 4 -r 1 --width 10 --initial_width 4 MIMONet-28 CIFAR100 HRR 4',
    'python src/train_superposition.py --sup_low 1 --sup_frequency 0.8 -e 1200 -f -x 5 -r 1 --width 10 --initial_width 4 MIMONet-28 CIFAR10 HRR 4',
    'python src/train_superposition.py --sup_low 1 --sup_frequency 0.8 -e 1200 -f -x 5 -r 1 --width 10 --initial_width 4 MIMONet-28 CIFAR100 HRR 4',
    'python src/validate_dynamic.py --sup_low 1 -c "path/to/model/CIFAR10model.pt" --width 10 --initial_width 4 MIMONet-28 CIFAR10 HRR 4',
    'python src/validate_dynamic.py --sup_low 1 -c "path/to/model/CIFAR100model.pt" --width 10 --initial_width 4 MIMONet-28 CIFAR100 HRR 4',
    'python src/validate_dynamic.py --sup_low 2 -c "path/to/model/CIFAR10model.pt" --width 10 --initial_width 4 MIMONet-28 CIFAR10 HRR 4',
    'python src/validate_dynamic.py --sup_low 2 -c "path/to/model/CIFAR100model.pt" --width 10 --initial_width 4 MIMONet-28 CIFAR100 HRR 4',
    'python src/validate_dynamic.py --sup_low 4 -c "path/to/model/CIFAR10model.pt" --width 10 --initial_width 4 MIMONet-28 CIFAR10 HRR 4',
    'python src/validate_dynamic.py --sup_low 4 -c "path/to/model/CIFAR100model.pt" --width 10 --initial_width 4 MIMONet-28 CIFAR100 HRR 4',
]
TINY = ["mimo.width=1", "mimo.initial_width=1", "model.name=MIMONet-10"]


def tiny(overrides=()):
    cfg = load_config("mimoconv/cifar10-mimonet28-10-dynamic", [*TINY, *overrides])
    return cfg, build_model(cfg, InputSpec(3, 32, 10))


# -- gradient skipping ----------------------------------------------------------------------------


def test_skip_rule_skips_a_planted_huge_gradient():
    rule = GradientSkipRule(ratio=10)
    rule.start_epoch()
    assert all(rule.accept(n) for n in (1.0, 2.0, 3.0, 1000.0))  # epoch 0: threshold is infinite
    rule.start_epoch()  # reference = mean accepted norm of epoch 0 = 251.5
    assert rule.threshold == pytest.approx(2515.0)
    assert rule.accept(2.0) and not rule.accept(1e6) and not rule.accept(float("nan"))
    assert rule.metrics()["grad_skipped_fraction"] == pytest.approx(2 / 3)


def test_recipe_skips_a_step_of_a_real_model_with_a_planted_batch():
    cfg, model = tiny()
    recipe = build_recipe(cfg)
    generator = torch.Generator().manual_seed(0)
    model.train()

    def grad_norm(images, labels, scale=1.0):
        inputs, targets = recipe.on_train_batch_start(images, labels, generator)
        loss, extras = recipe.loss(model, model(inputs), targets)
        model.zero_grad()
        (loss * scale).backward()
        assert set(extras) == {"binding_reg", "isometry_reg"}
        return torch.nn.utils.clip_grad_norm_(model.parameters(), 1e3)

    recipe.on_train_epoch_start(model, 0)
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for _ in range(2):
        assert recipe.on_before_optimizer_step(grad_norm(images, labels))
    recipe.on_train_epoch_start(model, 1)
    assert recipe.on_before_optimizer_step(grad_norm(images, labels))
    assert not recipe.on_before_optimizer_step(grad_norm(images, labels, scale=1e3))  # the planted batch: 1000x the gradient
    assert recipe.on_train_epoch_end(model, 1)["grad_skipped_fraction"] == pytest.approx(0.5)


# -- mixup, superposition sampling, parameter groups ----------------------------------------------


def test_mixup_labels_sum_to_one_and_images_are_convex_combinations():
    generator = torch.Generator().manual_seed(3)
    images, labels = torch.randn(16, 3, 4, 4), torch.arange(16)  # label = position
    mixed, targets = mixup(images, labels, 1.0, generator)
    assert 0.0 <= targets.lam <= 1.0 and torch.equal(targets.first, labels)
    soft = targets.soft(16)
    assert torch.allclose(soft.sum(1), torch.ones(16))
    expected = targets.lam * images + (1 - targets.lam) * images[targets.second]
    assert torch.allclose(mixed, expected, atol=1e-6)
    assert sample_lambda(0.0, generator) == 1.0


def test_sup_frequency_bundles_a_share_of_batches_at_sup_low():
    cfg, model = tiny()  # capacity 4, sup_low 1, sup_frequency 0.8
    recipe = build_recipe(cfg)
    generator = torch.Generator().manual_seed(0)
    draws = [recipe.choose_superposition(generator) for _ in range(4000)]
    assert set(draws) == {1, 4}
    assert draws.count(1) / len(draws) == pytest.approx(0.2, abs=0.03)
    static = build_recipe(load_config("mimoconv/cifar10-mimonet28-10-n4", TINY))
    assert {static.choose_superposition(generator) for _ in range(100)} == {4}
    assert (recipe.batch_size_factor(), recipe.passes_per_epoch()) == (4, 4)


def test_activation_parameters_get_no_weight_decay():
    cfg, model = tiny()
    decay, no_decay = build_recipe(cfg).param_groups(model)
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in model.activation_parameters()}
    assert len(decay["params"]) + len(no_decay["params"]) == len([p for p in model.parameters() if p.requires_grad])


def test_bad_sup_low_is_refused():
    with pytest.raises(ConfigError, match="sup_low"):
        build_recipe(load_config("mimoconv/cifar10-mimonet28-10-n4", ["superposition.sup_low=3"]))


# -- batch padding, modes ------------------------------------------------------------------------


def test_padding_predicts_every_image_of_an_odd_batch_once():
    _, model = tiny()
    model.eval()
    install_batch_padding(install_batch_padding(model))
    images = torch.randn(7, 3, 32, 32)
    for n in (1, 2, 4):
        model.set_superposition(n)
        assert model(images).shape == (7, 10)
    model.set_superposition(1)
    with torch.no_grad():
        assert torch.allclose(model(images)[:3], model(images[:3]), atol=1e-5)  # n=1: no mixing
    assert modes(4) == [1, 2, 4] and modes(6) == [1, 2, 3, 6]
    rows = mode_rows({"eval_dynamic_n2_top1": 50.0, "eval_dynamic_n2_images_per_sec": 9.0, "eval_dynamic_n2_count": 4.0})
    assert rows == [{"superposition": 2, "top1": 50.0, "images_per_sec": 9.0, "count": 4.0}]


# -- the 45k/5k split -------------------------------------------------------------------------------


def test_holdout_split_is_deterministic_and_matches_random_split():
    train, held = holdout_indices(50_000, 5_000, 42)
    again_train, again_held = holdout_indices(50_000, 5_000, 42)
    assert (train == again_train).all() and (held == again_held).all()
    assert len(train) == 45_000 and len(held) == 5_000
    assert len(set(train.tolist()) | set(held.tolist())) == 50_000
    subsets = torch.utils.data.random_split(range(50_000), [45_000, 5_000], generator=torch.Generator().manual_seed(42))
    assert list(subsets[1].indices) == held.tolist()
    assert (holdout_indices(50_000, 5_000, 1)[1] != held).any()
    with pytest.raises(ConfigError, match="data.holdout"):
        holdout_indices(100, 100, 42)


# -- legacy translation ------------------------------------------------------------------------------


def test_every_seed_command_translates():
    for line in SEED_COMMANDS:
        translation = translate(shlex.split(line))
        if "train_superposition.py" in line:
            assert translation.command == "train" and translation.preset.startswith("mimoconv/")
            seed = re.search(r"-r (\S+)", line).group(1)
            # a Table 1 preset reproduces the rest; the original's behaviour where raysys fixed it (docs/fidelity.md)
            assert translation.overrides == [f"seed={seed}", "mimo.eval_batch_stats=true",
                                             "mimo_recipe.skip_nonfinite_loss=true", "mimo.legacy_iso_init=true"], line
            cfg = load_config(translation.preset, translation.overrides)
            assert cfg.train.epochs == int(re.search(r"-e (\d+)", line).group(1))
            assert cfg.superposition.capacity == int(line.split()[-1])
            assert cfg.data.holdout == 0  # -f: train/test
        else:
            assert translation.command == "eval" and translation.preset.endswith("model.pt")
            sup_low = re.search(r"--sup_low (\d)", line).group(1)
            assert f"superposition.sup_low={sup_low}" in translation.overrides
            assert "evaluate.batch_size=512" in translation.overrides
            assert "mimo.eval_batch_stats=true" in translation.overrides


def test_translation_maps_short_and_long_flags_and_refuses_unknown_ones():
    long = translate(shlex.split(
        "python src/train_superposition.py --experiment_nr 3 --width 2 --initial_width 1 --sup_low 2 --sup_frequency 0.5 "
        "--binding_regularization 0.2 --epochs 7 --lr 0.1 --mixup_alpha 0 --gradient_clipping 5 --random_seed 9 MIMONet-16 CIFAR100 MBAT 4"))
    short = translate(shlex.split(
        "python src/train_superposition.py -x 3 -w 2 -i 1 -s 2 -u 0.5 -j 0.2 -e 7 -l 0.1 -a 0 -g 5 -r 9 MIMONet-16 CIFAR100 MBAT 4"))
    assert long.preset == short.preset == "mimoconv/cifar100-mimonet28-10-dynamic"
    assert long.overrides == short.overrides
    cfg = load_config(long.preset, long.overrides)
    assert (cfg.model.name, cfg.superposition.binding, cfg.superposition.sup_low, cfg.mimo.width) == ("MIMONet-16", "MBAT", 2, 2)
    assert (cfg.mimo_recipe.mixup_alpha, cfg.mimo_recipe.grad_skip_ratio, cfg.seed, cfg.data.holdout) == (0.0, 5.0, 9, 5000)
    for bad, word in [("--bogus 1", "--bogus"), ("-s 3", "sup_low")]:
        with pytest.raises(ConfigError, match=word):
            translate(shlex.split(f"python src/train_superposition.py -x 1 {bad} MIMONet-16 CIFAR10 HRR 4"))
    with pytest.raises(ConfigError, match="SVHN"):
        translate(shlex.split("python src/train_superposition.py -x 1 MIMONet-16 SVHN HRR 4"))
    with pytest.raises(ConfigError, match="checkpoint"):
        translate(shlex.split("python src/validate_dynamic.py --sup_low 1 MIMONet-28 CIFAR10 HRR 4"))


def test_an_evaluation_may_change_only_evaluation_keys():
    from raysys.driver.checkpoints import apply_eval_overrides

    trained = load_config("mimoconv/cifar10-mimonet28-10-dynamic", TINY)
    cfg = apply_eval_overrides(trained, ["superposition.sup_low=2", "evaluate.batch_size=64", "mimo.width=1",
                                         "mimo.relu_parameter_init=null", "model.name=MIMONet-10"])
    assert (cfg.superposition.sup_low, cfg.evaluate.batch_size, cfg.mimo.width) == (2, 64, 1)
    with pytest.raises(ConfigError, match="mimo.width=4 does not match the checkpoint"):
        apply_eval_overrides(trained, ["mimo.width=4"])
    with pytest.raises(ConfigError, match="unknown config key 'mimo.depth'"):
        apply_eval_overrides(trained, ["mimo.depth=4"])


def test_speed_accuracy_figure_plots_each_mode_and_says_when_nothing_was_measured(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from pipelines.report.definitions import mimoconv

    report = SimpleNamespace(definition=SimpleNamespace(title="MIMOConv"))
    monkeypatch.setattr(mimoconv, "mode_points", lambda _: {"N=4": [(1, 95.0, 100.0, 3), (4, 93.5, 310.0, 3)]})
    files = mimoconv.speed_accuracy(report, tmp_path / "some")
    assert all(path.stat().st_size > 0 for path in files)
    assert (tmp_path / "some" / "speed_accuracy.csv").read_text().splitlines() == [
        "row,superposition,top1,images_per_sec,seeds", "N=4,1,95.0000,100.00,3", "N=4,4,93.5000,310.00,3"]
    monkeypatch.setattr(mimoconv, "mode_points", lambda _: {})
    mimoconv.speed_accuracy(report, tmp_path / "none")
    assert (tmp_path / "none" / "speed_accuracy.csv").read_text() == "row,superposition,top1,images_per_sec,seeds\n"
