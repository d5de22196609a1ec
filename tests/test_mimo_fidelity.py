"""MIMOConv against the original's behaviour: config-free factories, batch-statistics evaluation,
original checkpoints (eval and -t), and skipping a non-finite loss (docs/fidelity.md)."""
from __future__ import annotations

import copy
import os
import shlex
import types

import pytest
import torch

from raysys.config import load_config
from raysys.errors import CheckpointError, ConfigError, TrainingError
from raysys.families.mimoconv.models.original_weights import (
    read_original_checkpoint, to_original_state_dict, transfer_matching_weights,
)
from raysys.legacy import translate
from raysys.models import InputSpec, build_model, create_model, model_kwargs
from raysys.train.accumulate import Accumulation
from raysys.train.recipes import build_recipe

TINY = ["mimo.width=1", "mimo.initial_width=1", "model.name=MIMONet-10", "superposition.capacity=2",
        "superposition.sup_low=1", "train.eval_batch_size=8"]
SPEC = InputSpec(3, 16, 10)


def tiny(overrides=()):
    cfg = load_config("mimoconv/cifar10-mimonet28-10-dynamic", [*TINY, *overrides])
    return cfg, build_model(cfg, SPEC)


def batches(count, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.randn(size, 3, 16, 16, generator=g), "label": torch.randint(0, 10, (size,), generator=g)}
            for _ in range(count)]


def runner_for(cfg, model, monkeypatch, stream):
    """The loop's EpochRunner around ``model`` without Ray: one worker, ``stream`` as every shard."""
    from raysys.train import loop
    from raysys.train.optim import build_optimizer, build_scheduler

    monkeypatch.setattr(loop, "iter_batches", lambda shard, collator, batch_size, **kw: iter(stream))
    runner = object.__new__(loop.EpochRunner)
    recipe = build_recipe(cfg)
    wc = types.SimpleNamespace(
        cfg=cfg, rank=0, world_size=1, device=torch.device("cpu"), spec=SPEC, passes=1, per_worker_batch=8,
        shuffle_rows=0, cuda=False, amp=False, channels_last=False, accumulation=Accumulation(1, len(stream)),
        batches_per_epoch=len(stream), progress=False)
    runner.feed = None
    runner.wc, runner.recipe, runner.model, runner.bare = wc, recipe, model, model
    runner.test_shard = runner.train_shard = None
    runner._collator = lambda epoch, augment: None
    runner.optimizer = build_optimizer(cfg, recipe.param_groups(model), recipe.optimizer_weight_decay())
    runner.scheduler = build_scheduler(cfg, runner.optimizer, len(stream))
    runner.scaler = torch.amp.GradScaler("cuda", enabled=False)
    return runner


# -- the model factories ------------------------------------------------------------------------------


def test_create_model_needs_no_config_and_equals_the_configured_model():
    cfg, _ = tiny(["superposition.binding=MBAT", "mimo.skip_init=true"])
    kwargs = model_kwargs(cfg, SPEC)
    assert kwargs["binding"] == "MBAT" and kwargs["capacity"] == 2 and kwargs["skip_init"] is True
    torch.manual_seed(0)
    configured = build_model(cfg, SPEC)
    torch.manual_seed(0)
    plain = create_model("MIMONet-10", num_classes=10, width=1, initial_width=1, binding="MBAT", capacity=2, skip_init=True)
    assert configured.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(configured.state_dict().values(), plain.state_dict().values()))
    with torch.device("meta"):  # the paper's MIMONet-28-10, N = 4: the original's count
        paper = create_model("MIMONet-28", num_classes=10, width=10, initial_width=4, binding="HRR", capacity=4)
    assert sum(p.numel() for p in paper.parameters()) == 38_208_086
    with pytest.raises(TypeError, match="depth"):
        create_model("MIMONet-10", depth=3)


# -- evaluation with batch statistics (the original never calls model.eval()) --------------------


def test_batch_stats_evaluation_equals_a_train_mode_evaluation_and_moves_the_running_stats(monkeypatch):
    cfg, model = tiny(["mimo.eval_batch_stats=true"])
    model.train()
    with torch.no_grad():  # some training, so running and batch statistics differ
        for batch in batches(3, seed=1):
            model(batch["image"] * 3 + 1)
    stream = batches(3, seed=2)
    reference = copy.deepcopy(model)
    before = model.bn1.running_mean.clone()
    runner = runner_for(cfg, model, monkeypatch, stream)

    result = runner.evaluate(epoch=0)  # at the capacity (test_*) and at sup_low = 1 (test_sup_low_*)

    # By hand: train mode, no gradients, the same batches at N = 2 and then at n = 1.
    reference.train()
    correct = {2: 0, 1: 0}
    with torch.no_grad():
        for n in (2, 1):
            reference.set_superposition(n)
            for batch in stream:
                correct[n] += int((reference(batch["image"]).argmax(1) == batch["label"]).sum())
    assert result["test_acc"] == pytest.approx(correct[2] / 24) and result["test_sup_low_acc"] == pytest.approx(correct[1] / 24)
    for mine, theirs in zip(model.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(mine, theirs)  # running statistics updated exactly as the original's
    assert not torch.allclose(model.bn1.running_mean, before)
    assert model.bn1.num_batches_tracked == reference.bn1.num_batches_tracked


def test_default_evaluation_uses_running_stats_and_leaves_them(monkeypatch):
    cfg, model = tiny()
    runner = runner_for(cfg, model, monkeypatch, batches(2))
    state = copy.deepcopy(model.state_dict())
    runner.evaluate(epoch=0)
    assert not model.training
    assert all(torch.equal(a, b) for a, b in zip(state.values(), model.state_dict().values()))


def test_raysys_eval_workers_use_the_recipe_hook():
    cfg, model = tiny(["mimo.eval_batch_stats=true"])
    build_recipe(cfg).on_evaluation_start(model.eval())
    assert model.training and model.bn1.training
    cfg, model = tiny()
    build_recipe(cfg).on_evaluation_start(model.train())
    assert not model.training


# -- non-finite losses ------------------------------------------------------------------------------


def _nan_at(recipe, bad_step):
    calls = {"n": 0}
    loss = recipe.loss

    def planted(model, outputs, targets):
        total, extras = loss(model, outputs, targets)
        calls["n"] += 1
        return (total * float("nan"), extras) if calls["n"] == bad_step + 1 else (total, extras)

    recipe.loss = planted


def test_a_nonfinite_loss_skips_its_step_with_the_option(monkeypatch):
    cfg, model = tiny(["mimo_recipe.skip_nonfinite_loss=true", "mimo_recipe.mixup_alpha=0"])
    stream = batches(3)
    runner = runner_for(cfg, model, monkeypatch, stream)
    _nan_at(runner.recipe, 1)
    snapshots = []
    step = runner.optimizer.step

    def recording_step(*args, **kwargs):
        snapshots.append(copy.deepcopy(model.fc.weight.detach()))
        return step(*args, **kwargs)

    runner.optimizer.step = recording_step
    metrics = runner.train_epoch(0)
    assert len(snapshots) == 2  # batches 0 and 2 stepped, batch 1 (NaN) did not
    assert metrics["skipped_steps"] == 1 and metrics["nonfinite_losses"] == 1
    assert torch.isfinite(torch.tensor(metrics["train_loss"])) and all(torch.isfinite(p).all() for p in model.parameters())
    assert runner.scheduler.last_epoch == 3  # the schedule still advances, as the original's
    assert runner.recipe.skip_rule.metrics()["grad_skipped_fraction"] == pytest.approx(1 / 3)


def test_a_nonfinite_loss_stops_the_run_by_default(monkeypatch):
    cfg, model = tiny(["mimo_recipe.mixup_alpha=0"])
    runner = runner_for(cfg, model, monkeypatch, batches(2))
    _nan_at(runner.recipe, 1)
    with pytest.raises(TrainingError, match="non-finite loss"):
        runner.train_epoch(0)


# -- original checkpoints: raysys eval, validate_dynamic.py -c, train_superposition.py -t --------------


class _Annealer:
    def anneal(self):
        return 0.0


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch mimo-pwned",))


def original_checkpoint(path, model):
    """A file shaped like the original's <identifier>_model.pt: weights plus pickled objects."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.save({"model_state_dict": to_original_state_dict(model.state_dict()), "optimizer_state_dict": optimizer.state_dict(),
                "scheduler_state_dict": {"anneal_func": _Annealer().anneal, "optimizer": optimizer, "x": _Payload()},
                "epoch": 3}, path)
    return path


def test_an_original_checkpoint_is_read_without_running_its_pickles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, source = tiny()
    path = original_checkpoint(tmp_path / "Experiment0_model.pt", source)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # what the generic loader refuses
    state = read_original_checkpoint(str(path))
    assert not (tmp_path / "mimo-pwned").exists()
    assert "binding.keys" in state and "unbind.weight" in state
    loaded = build_model(load_config("mimoconv/cifar10-mimonet28-10-dynamic", [*TINY, f"mimo.weights={path}"]), SPEC)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), source.eval()(x))
    with pytest.raises(CheckpointError, match="does not fit"):
        build_model(load_config("mimoconv/cifar10-mimonet28-10-dynamic", [*TINY, "superposition.capacity=4", f"mimo.weights={path}"]), SPEC)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_original_checkpoint(str(tmp_path / "missing.pt"))


def test_validate_dynamic_with_an_original_file_evaluates_a_preset_with_its_weights(tmp_path):
    from raysys.driver.evaluation import check_model

    path = original_checkpoint(tmp_path / "CIFAR10model.pt", tiny(["superposition.capacity=4"])[1])
    translation = translate(shlex.split(
        f"python src/validate_dynamic.py --sup_low 1 -c {path} --width 1 --initial_width 1 MIMONet-10 CIFAR10 HRR 4"))
    assert translation.command == "eval" and translation.preset == "mimoconv/cifar10-mimonet28-10-dynamic"
    assert {f"mimo.weights={path}", "mimo.eval_batch_stats=true", "evaluate.batch_size=512"} <= set(translation.overrides)
    cfg = load_config(translation.preset, translation.overrides)
    check_model(cfg, SPEC, None, str(path))  # what `raysys eval` does on the driver before Ray starts
    # A raysys run or checkpoint is still evaluated by name, as the original ("with batch statistics").
    by_name = translate(shlex.split("python src/validate_dynamic.py -c my-run -w 1 MIMONet-10 CIFAR10 HRR 2"))
    assert by_name.preset == "my-run" and "mimo.eval_batch_stats=true" in by_name.overrides


def test_transfer_learning_loads_the_tensors_of_matching_name_and_shape(tmp_path):
    _, source = tiny()  # capacity 2
    path = original_checkpoint(tmp_path / "source_model.pt", source)
    translation = translate(shlex.split(f"python src/train_superposition.py -x 1 -f -t {path} -w 1 MIMONet-10 CIFAR10 HRR 4"))
    assert f"mimo_recipe.transfer_learning_path={path}" in translation.overrides
    assert {"mimo.eval_batch_stats=true", "mimo_recipe.skip_nonfinite_loss=true"} <= set(translation.overrides)
    cfg = load_config(translation.preset, [*translation.overrides, "model.name=MIMONet-10", "mimo.initial_width=1"])
    target = build_model(cfg, SPEC)  # capacity 4: keys and unbinding differ in shape
    keys_before = target.binding.keys.detach().clone()
    recipe = build_recipe(cfg)
    recipe.phases()  # the driver's check before Ray: the file exists
    recipe.on_fit_start(types.SimpleNamespace(bare=target))  # the loop's call on a fresh run
    assert torch.equal(target.conv1.weight, source.conv1.weight) and torch.equal(target.fc.weight, source.fc.weight)
    assert torch.equal(target.binding.keys, keys_before)  # (4, C) vs (2, C): kept as initialised
    left = transfer_matching_weights(build_model(cfg, SPEC), str(path))
    assert set(left) == {"binding.keys", "unbind.weight", "unbind.bias"}
    missing = load_config(translation.preset, [*translation.overrides, f"mimo_recipe.transfer_learning_path={tmp_path / 'nope.pt'}"])
    with pytest.raises(ConfigError, match="mimo_recipe.transfer_learning_path"):
        build_recipe(missing).phases()
