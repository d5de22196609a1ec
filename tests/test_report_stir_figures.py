"""The STIR report's figures as matplotlib objects: units, published marks, missing models (no MLflow, no Ray)."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.report import stir_analysis, stir_figures
from pipelines.report.stir_published import by_cell, published
from pipelines.report.stir_runs import select_lr
from raysys.families.stir.analysis import ERRORS_ARTIFACT, INDICES_ARTIFACT
from raysys.families.stir.scenarios import ALL_SCALES

PAPER = by_cell(published("emoji"))  # (data, model, evaluation) -> the original's result
STANDARD_2 = PAPER[("emoji", "standard", 2)].test_acc_mean  # 39.11 at lr 1e-3


def record(model: str, evaluation: int, lr: float, seed: int, acc: float) -> dict:
    return {"run_id": f"{model}-{evaluation}-{lr:g}-{seed}", "status": "FINISHED", "params.model": model,
            "params.data": "emoji", "params.evaluation": str(evaluation), "params.lr": str(lr), "params.seed": str(seed),
            "params.kernel_size": "7", "params.interpolation": "bicubic", "metrics.test_acc": acc,
            "metrics.best_acc": 99.0 + seed / 10}


@pytest.fixture
def drawn(monkeypatch):
    """The figures each function drew, by file stem, instead of writing them."""
    figures = {}
    for module in (stir_figures, stir_analysis):
        monkeypatch.setattr(module, "save_figure", lambda fig, out, stem: figures.setdefault(stem, fig) and [])
    yield figures
    for fig in figures.values():
        stir_figures.plt.close(fig)


def _offsets(ax, transform=None):
    """(x, y) of every scatter point of ``ax`` (only those drawn with ``transform``, if given)."""
    return [tuple(xy) for c in ax.collections if transform is None or c.get_offset_transform() is transform
            for xy in np.asarray(c.get_offsets())]


def _legend_texts(legend) -> list:
    return [t.get_text() for t in legend.get_texts()]


def test_fig4_marks_the_published_mean_at_the_originals_lr_and_models_without_runs(drawn, tmp_path):
    records = [record("standard", 2, lr, seed, 35.0 + seed) for lr in (0.01, 0.001) for seed in (1, 2, 3)]
    stir_figures.hyperparam_figure(records, select_lr(records), tmp_path, data="emoji", published=PAPER)
    fig = drawn["hyperparams"]
    axes = fig.axes[:4]
    assert axes[0].get_ylabel() == "test accuracy (%)" and [ax.get_xlabel() for ax in axes] == ["model"] * 4
    # lr slots 1e-2, 1e-3 around each model: standard (x = 0) at 1e-3 is x = 0.2
    assert any(x == pytest.approx(0.2) and y == pytest.approx(STANDARD_2) for x, y in _offsets(axes[1]))
    missing = [len(_offsets(ax, ax.get_xaxis_transform())) for ax in axes]
    assert missing == [6, 5, 6, 6]  # one x per model without runs; standard has runs in scenario 2
    legend = _legend_texts(fig.legends[0])
    assert legend == ["lr 0.01", "lr 0.001", "kept lr (thick)", "published mean (original's lr)", "no runs"]


def test_fig5_names_its_units_and_lists_models_without_runs(drawn, tmp_path, monkeypatch):
    curve = {s: 0.5 for s in ALL_SCALES}
    monkeypatch.setattr(stir_figures, "read_generalization", lambda uri, r: curve if r["params.model"] == "standard" else None)
    stir_figures.generalization_figure([record("standard", 1, 0.001, 1, 40.0)], "", tmp_path, data="emoji")
    first = drawn["generalization"].axes[0]
    assert (first.get_xlabel(), first.get_ylabel()) == ("object scale (px)", "test accuracy (%)")
    labels = first.get_legend_handles_labels()[1]
    assert labels[0] == "standard (n=1)" and "conv3d: no runs" in labels and len(labels) == 6


def test_fig6_draws_the_published_means_and_lists_models_without_runs(drawn, tmp_path, monkeypatch):
    errors = {"stage1": np.full((2, 1, 6), 0.2), "stage2": np.full((2, 1, 6), 0.4)}
    artifacts = {"standard-2-0.001-1": {ERRORS_ARTIFACT: errors}, "slice_pool-2-0.001-1": {ERRORS_ARTIFACT: errors}}
    monkeypatch.setattr(stir_analysis, "load_artifact", lambda client, run_id, name: artifacts.get(run_id, {}).get(name))
    records = [record("standard", 2, 0.001, 1, 38.0), record("slice_pool", 2, 0.001, 1, 60.0)]
    stir_analysis.equivariance_figure(records, f"sqlite:///{tmp_path / 'unused.db'}", tmp_path, published=PAPER)
    ax = drawn["stir_equivariance"].axes[0]
    assert ax.get_ylabel() == "test accuracy (%)" and "equivariance error" in ax.get_xlabel()
    flat = {round(float(line.get_ydata()[0]), 4) for line in ax.lines if len(line.get_ydata()) == 2}
    assert round(STANDARD_2, 4) in flat and round(PAPER[("emoji", "kanazawa", 2)].test_acc_mean, 4) in flat
    labels = _legend_texts(ax.get_legend())
    assert {"standard (n=1)", "slice_pool (n=1)", "kanazawa: no runs", "published mean (original)"} <= set(labels)


def test_fig7_labels_the_kernel_size_in_pixels(drawn, tmp_path, monkeypatch):
    scales = np.arange(17, 65)
    pool2 = np.repeat(((scales - 17) // 8).astype(np.uint8)[:, None], 3, axis=1)[:, None, None, :]  # (48, 1, 1, 3)
    indices = {"pool1": pool2, "pool2": pool2, "scales": scales, "kernel_size": np.asarray(7)}
    monkeypatch.setattr(stir_analysis, "load_artifact",
                        lambda client, run_id, name: indices if name == INDICES_ARTIFACT else None)
    stir_analysis.indices_figure([record("slice_pool", 2, 0.001, 1, 60.0)], f"sqlite:///{tmp_path / 'unused.db'}", tmp_path)
    fig = drawn["stir_indices"]
    ax, bar = fig.axes[0], fig.axes[-1]
    assert ax.get_xlabel() == "object scale (px)" and bar.get_ylabel() == "chosen kernel size (px)"
    assert [int(t) for t in bar.get_yticks()] == [7, 9, 11, 13, 15, 17]  # k + 2i, the sizes the pool chose
    empty = [ax for ax in fig.axes if ax.get_title().endswith("· energy_pool")]  # no run: a panel that says so
    assert len(empty) == 1 and [t.get_text() for t in empty[0].texts] == ["no runs with indices.npz"]
