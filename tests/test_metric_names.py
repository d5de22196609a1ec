"""Grouped metric names (train/loss, test/acc): the mapping, MLflow gets them, every reader takes both spellings."""
from __future__ import annotations

import csv

import pytest

import pipelines.report.definitions  # noqa: F401
from pipelines.report.engine import build_report
from raysys.console import progress
from raysys.track import metric_names, runs
from raysys.train.early_stopping import EarlyStopping
from tests.test_report_membership import ISSUE_OVERRIDES, REPORT, Store


@pytest.mark.parametrize("flat, recorded", [
    ("train_loss", "train/loss"), ("test_acc", "test/acc"), ("val_acc", "val/acc"), ("lr", "train/lr"),
    ("epoch_time", "time/epoch"), ("best_acc", "val/best_acc"), ("final_test_acc", "test/final_acc"),
    ("ootb_test_acc", "ootb/test_acc"), ("eval_top1", "eval/top1"), ("kernel_size_l03", "layers/kernel_size_l03"),
    ("trials_failed", "sweep/trials_failed"), ("epoch", "epoch"), ("train/loss", "train/loss"),
])
def test_flat_names_map_to_one_grouped_name_and_back(flat, recorded):
    assert metric_names.grouped(flat) == recorded
    if flat != recorded:
        assert flat in metric_names.former_names(recorded)
        assert metric_names.value({flat: 1.0}, recorded) == 1.0 == metric_names.value({recorded: 1.0}, flat)


def test_value_prefers_the_grouped_spelling_and_has_a_default():
    assert metric_names.value({"test/acc": 0.9, "test_acc": 0.1}, "test_acc") == 0.9
    assert metric_names.value({"train/loss": 1.0}, "test_acc", default=-1) == -1


def test_the_console_summary_names_metrics_as_mlflow_records_them():
    assert all(metric_names.grouped(flat) == recorded for flat, recorded, _ in progress.SUMMARY)
    line = progress.epoch_summary({"epoch": 1, "test/acc": 0.5, "train_loss": 0.25}, 2)
    assert line == "epoch 1/2  train/loss 0.2500  test/acc 50.0%"


@pytest.mark.parametrize("spelling", ["val_acc", "val/acc"])
def test_early_stopping_takes_either_spelling(spelling):
    import torch

    stopper, model = EarlyStopping(1, spelling), torch.nn.Linear(1, 1)
    assert stopper.update({"epoch": 1, "val_acc": 50.0}, model) is False and stopper.best == 50.0
    assert stopper.update({"epoch": 2, "val_acc": 40.0}, model) is True


def test_a_run_logged_through_runs_log_metrics_holds_grouped_names(tmp_path):
    store = Store(tmp_path)
    run_id = store.client.create_run(store.exp_id).info.run_id
    runs.log_metrics(store.uri, run_id, {"epoch": 1, "train_loss": 0.5, "test_acc": 0.75, "lr": 0.1}, step=1)
    runs.log_metrics(store.uri, run_id, {"epoch": 2, "test_acc": 0.8}, step=2)
    assert set(store.client.get_run(run_id).data.metrics) == {"epoch", "train/loss", "test/acc", "train/lr"}
    assert [m.value for m in runs.metric_history(store.uri, run_id, "test_acc")] == [0.75, 0.8]
    assert runs.logged_steps(store.uri, run_id, "epoch") == [1, 2]


def _table(path):
    with open(path, newline="") as handle:
        return {row["row"]: {k: v for k, v in row.items()} for row in csv.DictReader(handle)}


def test_a_report_over_old_and_new_named_runs_gives_the_same_table(tmp_path):
    """Seed 0's runs record test_acc (before grouping), seed 1's test/acc: one table, as if all were one spelling."""
    tables = []
    for name, spelling in (("flat", "test_acc"), ("mixed", None)):
        store = Store(tmp_path / name)
        parent = store.parent(ISSUE_OVERRIDES, "2025-01-02T10:00:00.000000Z")
        for (label, seed), cfg in store.configs(ISSUE_OVERRIDES).items():
            run_id = store.run(cfg.run_name, 0.0, cfg=cfg, parent=parent, epochs=0)  # no metric yet
            key = spelling or ("test_acc" if seed == 0 else "test/acc")
            from mlflow.entities import Metric

            store.client.log_batch(run_id, metrics=[Metric(key, 0.5 + seed / 100 + e / 10, 0, e) for e in range(2)])
        build_report(REPORT, tmp_path / name / "out", tracking_uri=store.uri, log_to_mlflow=False)
        tables.append(_table(tmp_path / name / "out" / REPORT / "table.csv"))
    assert tables[0] == tables[1]
    assert float(tables[1]["ResNet-20"]["mean"]) == pytest.approx(60.5) and tables[1]["ResNet-20"]["n"] == "2"


def test_the_stir_export_of_a_grouped_run_has_the_originals_columns(tmp_path):
    from mlflow.entities import Metric, Param

    from pipelines.report.stir_runs import CLEAN_COLUMNS, record_of, write_clean_csv

    store = Store(tmp_path)
    run_id = store.client.create_run(store.exp_id).info.run_id
    flat = {"train_loss": 0.5, "test_acc": 61.0, "train_time": 2.0, "val_acc": 60.0, "test_loss": 1.0,
            "train_acc": 70.0, "avg_time": 2.5, "val_loss": 1.1, "best_acc": 62.0}
    runs.log_metrics(store.uri, run_id, flat, step=3)
    store.client.log_batch(run_id, params=[Param(k, v) for k, v in {"model": "standard", "data": "emoji",
                                                                      "evaluation": "2", "lr": "0.01", "seed": "1"}.items()])
    assert "val/best_acc" in store.client.get_run(run_id).data.metrics
    path = write_clean_csv([record_of(store.client.get_run(run_id))], tmp_path / "clean.csv")
    with open(path, newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert list(row) == CLEAN_COLUMNS
    assert {k: float(row[f"metrics.{k}"]) for k in flat} == flat


def test_report_figures_have_integer_epochs_units_whole_error_bars_and_missing_rows(tmp_path, monkeypatch):
    """The headline and curves of a report where one row has no runs and the rows have published numbers."""
    import dataclasses

    from mlflow.entities import Metric

    from pipelines.report import engine, figures

    store = Store(tmp_path)
    parent = store.parent(ISSUE_OVERRIDES, "2025-01-02T10:00:00.000000Z")
    for (label, seed), cfg in store.configs(ISSUE_OVERRIDES).items():
        if label == "ResNet-20":
            run_id = store.run(cfg.run_name, 0.0, cfg=cfg, parent=parent, epochs=0)
            store.client.log_batch(run_id, metrics=[Metric("test/acc", 0.7 + seed / 20 + e / 10, 0, e + 1) for e in range(3)])
    definition = dataclasses.replace(engine.REPORTS.get(REPORT), published={"ResNet-20": 83.0, "ResNet-32": 91.0})
    report = engine.collect(definition, tracking_uri=store.uri)
    drawn = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, out, stem: drawn.setdefault(stem, fig) and [])
    figures.curves(report, tmp_path)
    figures.headline(report, tmp_path)
    curves, headline = drawn["curves"].axes[0], drawn["headline"].axes[0]
    assert curves.get_xlabel() == "epoch" and curves.get_ylabel() == "test accuracy (%)"
    assert all(float(t).is_integer() for t in curves.get_xticks())
    assert "ResNet-32: no runs" in curves.get_legend_handles_labels()[1]
    row = report.rows[0]
    low, high = headline.get_ylim()
    assert headline.get_ylabel() == "test accuracy (%)"
    assert low <= row.mean - row.std and row.mean + row.std <= high and low <= 83.0 <= 91.0 <= high
    assert {"no runs", "published"} <= set(headline.get_legend_handles_labels()[1])
