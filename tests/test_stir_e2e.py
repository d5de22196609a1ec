"""STIR training end to end: emoji shards -> scenario streams -> Ray Train -> MLflow with the original's names."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from raysys.config import load_config
from raysys.families.stir.scenarios import SCENARIOS
from raysys.errors import ConfigError
from raysys.train.early_stopping import EarlyStopping
from raysys.driver.training import run_training
from raysys.track import metric_names
from raysys.track.runs import metric_history

ORIGINAL_PARAMS = {"model": "standard", "data": "emoji", "evaluation": "2", "kernel_size": "7",
                   "interpolation": "bicubic", "lr": "0.001", "seed": "1"}


@pytest.fixture(scope="module")
def emoji_shards(tmp_path_factory) -> Path:
    from pipelines.stir.emoji import offline_glyphs
    from pipelines.stir.generate import generate

    out = tmp_path_factory.mktemp("stir") / "emoji"
    generate("emoji", str(out), glyphs=offline_glyphs())
    return out


def without_mlflow(records: Path):
    """A Ray Train worker entry that refuses any import of mlflow and writes what was attempted to ``records``."""

    def entry(loop_config):  # nested: cloudpickle sends it by value to the worker
        import importlib.abc
        import os
        import sys

        attempts = []

        class RefuseMlflow(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "mlflow" or name.startswith("mlflow."):
                    attempts.append(name)
                    raise ImportError(f"a training worker imported {name}")
                return None

        for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, RefuseMlflow())
        try:
            from raysys.train.loop import train_loop_per_worker

            train_loop_per_worker(loop_config)
        finally:
            loaded = sorted(m for m in sys.modules if m == "mlflow" or m.startswith("mlflow."))
            (records / f"worker-{os.getpid()}.txt").write_text(repr((attempts, loaded)))

    return entry


def test_tiny_emoji_run_logs_the_original_metrics(emoji_shards, ray_cluster, workdir, monkeypatch):
    from mlflow.tracking import MlflowClient

    from raysys.driver import training

    records = workdir / "imports"
    records.mkdir()
    monkeypatch.setattr(training, "_worker_entry", without_mlflow(records))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cfg = load_config("stir/emoji", [
        f"data.path={emoji_shards}", "data.limit=160", "data.test_limit=144", "train.epochs=2", "seed=1",
        "stir.shuffle=once",  # the original's fixed train order (a sorted Ray Data stream, no local shuffle)
        f"tracking.uri={uri}", f"checkpoint.storage_path={workdir / 'runs'}",
    ])
    summary = run_training(cfg, progress=False)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    # No worker imported mlflow: params, metrics and artifacts below came through the driver feed.
    seen = [path.read_text() for path in records.iterdir()]
    assert seen and all(text == "([], [])" for text in seen), seen
    assert {k: run.data.params[k] for k in ORIGINAL_PARAMS} == ORIGINAL_PARAMS
    steps = lambda key: [m.step for m in sorted(metric_history(client, run.info.run_id, key), key=lambda m: m.step)]  # noqa: E731
    for key in ("train_loss", "train_acc", "train_time", "val_loss", "val_acc"):
        assert steps(key) == [1, 2], key
    metrics = metric_names.flat_view(run.data.metrics)
    assert metrics["val_count"] == 144  # the val stream: scenario-2 scales, capped by data.test_limit
    assert "test_acc" in metrics and 0.0 <= metrics["test_acc"] <= 100.0
    val_accs = [m.value for m in metric_history(client, run.info.run_id, "val_acc")]
    assert metrics["best_acc"] == pytest.approx(max(val_accs))
    assert metrics["avg_time"] > 0 and metrics["test_loss"] > 0
    assert summary["test_accuracy"] == pytest.approx(metrics["test_acc"])
    # Per-scale test accuracy, the columns of the original's eval.py --generalization.
    text = Path(client.download_artifacts(run.info.run_id, "generalization.csv", str(workdir))).read_text()
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert (row["model"], row["data"], row["eval"]) == ("standard", "emoji", "2")
    filled = {int(key[1:]) for key, value in row.items() if key.startswith("s") and value}
    assert filled and filled <= set(SCENARIOS[2].test_scales)
    # The original's eval.py --equivariance on the best weights: errors.npz (n classes, m instances, 6 pairs).
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "errors.npz" in artifacts and "indices.npz" not in artifacts  # no scale pools in stir_standard
    with np.load(client.download_artifacts(run.info.run_id, "errors.npz", str(workdir))) as errors:
        assert sorted(errors.files) == ["stage1", "stage2"]
        assert errors["stage1"].shape == errors["stage2"].shape == (36, 1, 6)
        assert np.isfinite(errors["stage1"]).mean() > 0.5 and (errors["stage1"][np.isfinite(errors["stage1"])] >= 0).all()


def test_early_stopping_keeps_the_best_weights():
    model = nn.Linear(2, 1)
    stopper = EarlyStopping(patience=2, metric="val_acc")
    with torch.no_grad():
        model.weight.fill_(1.0)
    assert not stopper.update({"epoch": 1, "val_acc": 50.0}, model)
    with torch.no_grad():
        model.weight.fill_(2.0)
    assert not stopper.update({"epoch": 2, "val_acc": 50.0}, model)  # not strictly better
    assert stopper.update({"epoch": 3, "val_acc": 40.0}, model) and stopper.stopped
    stopper.restore_best(model)
    assert model.weight.eq(1.0).all() and stopper.best_epoch == 1
    resumed = EarlyStopping(2, "val_acc")
    resumed.load_state_dict(stopper.state_dict())
    assert resumed.stopped
    assert not EarlyStopping(0, "val_acc").update({"epoch": 1}, model)  # off: nothing is read
    with pytest.raises(ConfigError, match="early_stopping_metric='val_acc'"):
        EarlyStopping(1, "val_acc").update({"epoch": 1, "test_acc": 0.5}, model)


class _FinalLoop:
    """What StirRecipe.on_fit_end uses of the loop: the final stream at every scale of a 36-class split."""

    has_run, bare = True, None

    def __init__(self, per_scale: int):
        self.per_scale, self.logged = per_scale, {}
        self.wc = type("WC", (), {"device": "cpu"})()

    def evaluate_stream(self, stream, per_batch):
        assert stream == "final"
        index = torch.arange(48 * self.per_scale)
        labels = index % self.per_scale
        scale = 64 - index // self.per_scale
        outputs = torch.zeros(len(index), self.per_scale)
        outputs[torch.arange(len(index)), torch.where(scale % 2 == 0, labels, (labels + 1) % self.per_scale)] = 5.0
        per_batch({"index": index, "label": labels}, outputs)  # right at even object sizes only

    def all_reduce(self, values):
        return values

    def log_params(self, params):
        self.logged["params"] = params

    def log_artifact(self, name, data):
        self.logged[name] = data

    def set_tags(self, tags):
        self.logged["tags"] = tags


def test_final_test_scores_the_scenario_and_generalization_covers_all_48_scales(emoji_shards):
    from raysys.data import holdout
    from raysys.data.shards import load_manifest
    from raysys.families.stir.recipe import StirRecipe
    from raysys.families.stir.scenarios import original_train_order

    cfg = load_config("stir/emoji", [f"data.path={emoji_shards}", "stir.evaluation=1", "stir.analysis=false",
                                     "stir.shuffle=once"])
    manifest = load_manifest(str(emoji_shards))
    recipe = StirRecipe(cfg)
    selection = recipe.select_data(manifest, holdout.select(cfg, manifest))
    assert set(selection.row_filters) == {"train", "test"}  # "final" reads all 48 scales
    assert np.array_equal(selection.row_orders["train"], original_train_order(manifest, 1))
    loop = _FinalLoop(36)
    final = recipe.on_fit_end(loop, [{"train_time": 1.0, "val_acc": 50.0}])
    assert final["test_acc"] == pytest.approx(50.0)  # scales 33..64: half of them even
    (row,) = list(csv.DictReader(io.StringIO(loop.logged["generalization.csv"].decode())))
    assert [float(row[f"s{s}"]) for s in range(17, 65)] == [1.0 if s % 2 == 0 else 0.0 for s in range(17, 65)]
    assert "shuffle" not in loop.logged["params"]  # the original's seven params only
    for bad, message in (("stir.shuffle=twice", "stir.shuffle"), ("stir.disco_basis=/nonexistent.pt", "no such file")):
        with pytest.raises(ConfigError, match=message):
            StirRecipe(load_config("stir/emoji", [f"data.path={emoji_shards}", bad])).select_data(
                manifest, holdout.select(cfg, manifest))
