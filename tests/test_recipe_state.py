"""Recipe state: what hooks keep is checkpointed (weights_only) and restored, so a resumed run is the same run."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from raysys.config import load_config
from raysys.train import checkpoint as ckpt
from raysys.train.recipes import RECIPES, build_recipe
from raysys.track import metric_names
from raysys.track.runs import metric_history

# One preset per registered recipe (a new recipe needs a line here), with early stopping on.
PRESETS = {
    "default": "cifar-resnet/fashion-mnist-resnet20",
    "flexconv": "flexconv/cifar10-flexnet7",
    "mimo": "mimoconv/cifar10-mimonet28-10-dynamic",
    "stir": "stir/emoji",
    "antialiased": "antialiased/eval-resnext50_32x4d",
    "antialiased-finetune": "antialiased/finetune-resnet50_lpf4",
    "antialiased-resume": "antialiased/scratch-resnet18_lpf4",
}
MIMO_TINY = ["model.name=MIMONet-10", "mimo.width=1", "mimo.initial_width=1", "superposition.capacity=2"]
EXTRA = {"mimo": MIMO_TINY, "antialiased-resume": ["train.recipe=antialiased-resume"]}
# Wall-clock metrics: the only ones a resumed run may not repeat exactly.
TIMINGS = {"epoch_time", "images_per_sec", "train_time"}
RECORDED_TIMINGS = {metric_names.grouped(k) for k in TIMINGS}  # as MLflow holds them


def same(a, b) -> bool:
    """Equal nested dicts/lists of tensors and plain values (tensors: same dtype, shape and values)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def run_epochs(recipe, model: nn.Module, epochs: int) -> list:
    """Drive the hooks the loop calls for ``epochs`` epochs (no data: norms and metrics made up); each epoch's weights."""
    metric = str(recipe.cfg.train.early_stopping_metric)
    weights = []
    for epoch in range(epochs):
        recipe.on_train_epoch_start(model, epoch)
        for step in range(4):
            recipe.on_before_optimizer_step(torch.tensor(1.0 + step + 10 * epoch))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        stats = recipe.on_train_epoch_end(model, epoch)
        recipe.on_validation_end(model, {"epoch": epoch + 1, metric: [0.5, 0.7, 0.6][epoch % 3], **stats})
    return weights


def model_for(name: str, cfg) -> nn.Module:
    """A model the recipe's epoch hooks accept (MIMO's read its superposition and statistics)."""
    if name == "mimo":
        from raysys.models import InputSpec, build_model

        return build_model(cfg, InputSpec(3, 32, 10))
    return nn.Linear(3, 2)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_recipes_state_round_trips_through_a_weights_only_checkpoint(name, tmp_path):
    assert sorted(RECIPES.names()) == sorted(PRESETS)  # every recipe is covered
    extra = EXTRA.get(name, [])
    cfg = load_config(PRESETS[name], [*extra, "train.early_stopping_patience=5", "train.early_stopping_metric=val_acc"])
    assert cfg.train.recipe == name
    recipe, model = build_recipe(cfg), model_for(name, cfg)
    weights = run_epochs(recipe, model, 3)
    state = recipe.state_dict()
    assert state["early_stopping"]["best_epoch"] == 2 and state["early_stopping"]["stale"] == 1
    ckpt.save_atomic({"recipe": state}, tmp_path / ckpt.STATE_FILE)
    loaded = ckpt.load_file(tmp_path / ckpt.STATE_FILE)["recipe"]  # torch.load(weights_only=True)
    assert same(loaded, state)
    resumed = build_recipe(cfg)
    resumed.load_state_dict(loaded)
    assert same(resumed.state_dict(), state) and resumed.should_stop == recipe.should_stop
    fresh = model_for(name, cfg)
    resumed.on_train_end(fresh)  # early stopping's best weights (epoch 2's) came back from the checkpoint
    assert same(fresh.state_dict(), weights[1])
    if name == "mimo":
        assert state["grad_skip"]["reference"] == pytest.approx(2.5 + 10)  # epoch 2's accepted norms 11..14
        for r in (recipe, resumed):
            r.on_train_epoch_start(model, 3)  # closes epoch 3 (norms 21..24) in both
        assert resumed.skip_rule.threshold == recipe.skip_rule.threshold == pytest.approx(10 * 22.5)
        # A checkpoint of raysys before recipe state: the rule starts over (infinite threshold), nothing fails.
        old = build_recipe(cfg)
        old.load_state_dict({"early_stopping": state["early_stopping"]})
        assert old.skip_rule.threshold == math.inf


# -- a MIMO run killed after epoch 1 and resumed is the uninterrupted run ----------------------------


@pytest.fixture(scope="module")
def cifar_shards(tmp_path_factory) -> Path:
    """160 train / 64 test random images in the real CIFAR-10 pickle format, as shards."""
    from tests.conftest import cifar10_shards

    return cifar10_shards(tmp_path_factory.mktemp("cifar"), train_per_batch=32)


def failing_once_after_epoch_1(marker: Path):
    """A Ray Train worker entry that raises right after epoch 1's checkpoint is reported, once per ``marker``.

    Each start writes a line to ``marker.starts``: the epoch of the checkpoint it resumes from (0: none).
    """

    def entry(loop_config):  # nested: cloudpickle sends it by value to the worker
        import ray.train

        from raysys.train import checkpoint as ckpt_module
        from raysys.train.loop import train_loop_per_worker

        latest = ray.train.get_checkpoint()
        resumed_from = 0
        if latest is not None:
            with latest.as_directory() as directory:
                resumed_from = int(ckpt_module.load_file(Path(directory))["epoch"])
        with open(f"{marker}.starts", "a") as handle:
            handle.write(f"{resumed_from}\n")
        report = ray.train.report

        def report_then_fail(metrics, checkpoint=None, **kwargs):
            report(metrics, checkpoint=checkpoint, **kwargs)
            if metrics.get("epoch") == 1 and checkpoint is not None and not marker.exists():
                marker.write_text("failed once")
                raise RuntimeError("injected failure after epoch 1's checkpoint")

        ray.train.report = report_then_fail
        try:
            train_loop_per_worker(loop_config)
        finally:
            ray.train.report = report

    return entry


@pytest.mark.slow
def test_a_mimo_run_killed_after_epoch_1_and_resumed_repeats_the_uninterrupted_metrics(
        cifar_shards, ray_cluster, workdir, monkeypatch):
    from mlflow.tracking import MlflowClient

    from raysys.driver import training

    def config(name: str):
        return load_config("mimoconv/cifar10-mimonet28-10-dynamic", [
            *MIMO_TINY, f"data.path={cifar_shards}", "data.holdout=0", "train.epochs=3", "train.batch_size=16",
            "train.eval_batch_size=0", "superposition.sup_frequency=0.5",
            # Ratio 1: a step is skipped when its norm is above the last epoch's mean, so about half of them are
            # from epoch 2 on; a resumed epoch without the reference norm would skip none.
            "mimo_recipe.grad_skip_ratio=1.0", "failure.max_failures=1", "scaling.num_workers=1",
            f"tracking.uri=sqlite:///{workdir / name}.db", f"checkpoint.storage_path={workdir / name}",
        ])

    def metrics(uri: str, run_id: str):
        client = MlflowClient(tracking_uri=uri)
        keys = set(client.get_run(run_id).data.metrics) - RECORDED_TIMINGS
        return {k: [(m.step, m.value) for m in sorted(metric_history(client, run_id, k), key=lambda m: m.step)]
                for k in keys}

    whole_cfg = config("whole")
    whole = training.run_training(whole_cfg, progress=False)
    marker = workdir / "failed-once"
    monkeypatch.setattr(training, "_worker_entry", failing_once_after_epoch_1(marker))
    resumed_cfg = config("resumed")
    resumed = training.run_training(resumed_cfg, progress=False)
    assert marker.exists() and Path(f"{marker}.starts").read_text().split() == ["0", "1"]  # resumed from epoch 1

    expected = metrics(whole_cfg.tracking.uri, whole["run_id"])
    got = metrics(resumed_cfg.tracking.uri, resumed["run_id"])
    assert [step for step, _ in expected["train/loss"]] == [1, 2, 3]
    assert max(v for _, v in expected["train/skipped_steps"]) > 0  # the rule acted
    assert {k for k in expected if k.startswith("train/grad_skip")} == {"train/grad_skip_threshold", "train/grad_skipped_fraction"}
    assert got == expected  # every epoch's metrics, bit for bit (floats compared exactly)
    histories = [ckpt.load_file(Path(summary["checkpoint"]))["history"] for summary in (whole, resumed)]
    assert [{k: v for k, v in m.items() if k not in TIMINGS} for m in histories[1]] == \
        [{k: v for k, v in m.items() if k not in TIMINGS} for m in histories[0]]
