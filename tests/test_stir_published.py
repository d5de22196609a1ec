"""The STIR paper's published numbers: aggregates of the original's scripts/clean.csv, stored and re-derivable."""
from __future__ import annotations

import pytest

from pipelines.report.stir_published import Published, by_cell, derive, module_text, published


def test_the_stored_mean_of_emoji_scenario_2_standard_is_the_one_docs_reproduction_quotes():
    """docs/REPRODUCTION.md: the original's runs of emoji, scenario 2, standard, lr 1e-3: 39.11 ± 3.67 % (seeds 1-50)."""
    row = published("emoji")[("emoji", "standard", 2, "7", "bicubic")]
    assert (row.lr, row.n, row.seeds) == (0.001, 50, "1-50")
    assert f"{row.test_acc_mean:.2f} ± {row.test_acc_std:.2f}" == "39.11 ± 3.67"


def test_every_dataset_model_and_scenario_has_one_published_row_at_the_papers_seeds():
    rows = published()
    assert len(rows) == 4 * 11 * 4
    assert {(row.data, row.n, row.seeds) for row in rows.values()} == {
        ("emoji", 50, "1-50"), ("mnist", 25, "1-25"), ("trafficsign", 25, "1-25"), ("aerial", 25, "1-25")}
    assert all(0 <= row.test_acc_mean <= 100 and row.lr in (0.01, 0.001) for row in rows.values())
    assert by_cell(published("mnist"))[("mnist", "standard", 2)].lr == 0.01  # the original kept 1e-2 there


def _clean_row(seed: int, acc: float, lr: str = "0.001", model: str = "standard") -> dict:
    return {"params.data": "emoji", "params.model": model, "params.evaluation": "2", "params.kernel_size": "7",
            "params.interpolation": "bicubic", "params.lr": lr, "params.seed": str(seed), "metrics.test_acc": str(acc),
            "metrics.train_time": "0.5", "metrics.avg_time": ""}


def test_derive_aggregates_clean_csv_rows_per_configuration_and_lr_and_the_module_reads_back():
    rows = derive([_clean_row(1, 40.0), _clean_row(2, 44.0), _clean_row(3, 45.0), _clean_row(5, 10.0, lr="0.01")])
    assert [(r.lr, r.n, r.seeds) for r in rows] == [(0.001, 3, "1-3"), (0.01, 1, "5")]
    first = rows[0]
    assert first.test_acc_mean == pytest.approx(43.0) and first.test_acc_median == 44.0
    assert first.test_acc_std == pytest.approx(2.645751, abs=1e-6)
    assert first.train_time_mean == 0.5 and first.avg_time_mean is None  # an empty column is no number
    namespace: dict = {}
    exec(module_text(rows), namespace)  # the stored module is this text
    assert [Published(*row) for row in namespace["ROWS"]] == rows
