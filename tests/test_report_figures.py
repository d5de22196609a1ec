"""The antialiased, MIMOConv and FlexConv report figures as matplotlib objects (fake runs: no MLflow, no Ray)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

import pipelines.report.definitions  # noqa: F401
from pipelines.report import figures
from pipelines.report.definitions import antialiased, flexconv, mimoconv
from pipelines.report.engine import REPORTS, Report, RowResult, SeedRun
from raysys.track import runs


class FakeClient:
    """``get_run(run_id).data.metrics`` of made-up runs."""

    def __init__(self, metrics):
        self.metrics = metrics

    def get_run(self, run_id):
        return SimpleNamespace(data=SimpleNamespace(metrics=self.metrics[run_id]))


@pytest.fixture
def drawn(monkeypatch):
    found = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, out, stem: found.setdefault(stem, fig) and [])
    yield found
    for fig in found.values():
        figures.plt.close(fig)


def report(name: str, rows, metrics=None, monkeypatch=None) -> Report:
    """A Report of ``rows`` [(label, [SeedRun])]; the runs' metrics served by a fake client."""
    if monkeypatch is not None:
        monkeypatch.setattr(runs, "client", lambda uri: FakeClient(metrics or {}))
    d = REPORTS.get(name)
    return Report(d, None, [RowResult(label, seed_runs, d.published.get(label)) for label, seed_runs in rows], "")


def test_accuracy_consistency_has_units_both_sets_and_lists_rows_without_runs(drawn, tmp_path):
    numbers = antialiased.PUBLISHED["resnet18"][1]
    rows = [(label, [SeedRun(1, "r", f"id-{label}", acc - 1, {antialiased.CONSISTENCY: cons - 1})])
            for label, (acc, cons) in numbers.items() if label != "Tri-4"] + [("Tri-4", [SeedRun(1, "r")])]
    antialiased.accuracy_consistency(report("antialiased-filters-resnet18", rows), tmp_path)
    ax = drawn["accuracy_consistency"].axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("ImageNet top-1 accuracy (%)", "shift consistency (%)")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"published", "ours", "Tri-4: no runs"} <= set(labels)


def test_speed_accuracy_lists_rows_without_runs_or_evaluation(drawn, tmp_path, monkeypatch):
    metrics = {"a": {"eval_dynamic_n1_top1": 95.0, "eval_dynamic_n1_images_per_sec": 900.0,
                     "eval_dynamic_n2_top1": 94.0, "eval_dynamic_n2_images_per_sec": 1800.0},
               "b": {"test_acc": 0.95}}
    rows = [("MIMOConv N=2", [SeedRun(1, "r", "a", 95.0)]), ("WRN-28-10", [SeedRun(1, "r", "b", 95.0)]),
            ("WideIsoNet-28-10", [SeedRun(1, "r")])]
    mimoconv.speed_accuracy(report("mimoconv-cifar10", rows, metrics, monkeypatch), tmp_path)
    ax = drawn["speed_accuracy"].axes[0]
    assert ax.get_ylabel() == "test top-1 accuracy (%)" and "images/s" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["MIMOConv N=2 (1 seed)", "WRN-28-10: not evaluated", "WideIsoNet-28-10: no runs"]


def test_kernel_sizes_have_whole_layer_ticks_error_bars_and_rows_without_runs(drawn, tmp_path, monkeypatch):
    metrics = {f"s{seed}": {f"layers/kernel_size_l{i:02d}": 3.0 + 2 * i + 2 * seed for i in range(4)} for seed in (1, 2)}
    rows = [("FlexNet-7", [SeedRun(seed, "r", f"s{seed}", 90.0) for seed in (1, 2)]), ("N-Jet", [SeedRun(1, "r")])]
    flexconv.kernel_sizes(report("flexconv-table3-cifar10", rows, metrics, monkeypatch), tmp_path)
    ax = drawn["kernel_sizes"].axes[0]
    assert ax.get_ylabel() == "learned kernel size (pixels)" and ax.get_xlabel().startswith("layer")
    assert all(float(t).is_integer() for t in ax.get_xticks())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == ["FlexNet-7 (n=2)", "N-Jet: no runs"]
    low, high = ax.get_ylim()
    assert low <= 3.0 + 2 and 3.0 + 6 + 4 <= high  # the whole error bar of every layer
