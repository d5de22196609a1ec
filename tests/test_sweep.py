"""Sweeps on real Ray Tune + Ray Train + MLflow: parent/child runs, idempotent re-runs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from raysys.errors import ConfigError
from raysys.tune.space import load_space
from raysys.tune.sweep import run_sweep

TINY = "cifar-resnet/fashion-mnist-resnet20"


def write_space(path: Path, shards: Path, workdir: Path, *, default_locations: bool = False, **fields) -> Path:
    """A tiny space; with ``default_locations`` MLflow and checkpoints use the cwd defaults."""
    locations = [] if default_locations else [
        f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}", f"checkpoint.storage_path={workdir / 'runs'}",
    ]
    space = {
        "name": "tiny-sweep",
        "report": "tiny",
        "preset": TINY,
        "overrides": [
            f"data.path={shards}", "data.limit=256", "data.test_limit=128", "train.epochs=1", "train.batch_size=64",
            "scaling.num_workers=1", *locations,
        ],
        "grid": {"train.lr": [0.1, 0.05]},
        "seeds": [0, 1],
        **fields,
    }
    path.write_text(yaml.safe_dump(space))
    return path


def test_space_expands_rows_grid_and_seeds(tmp_path):
    path = write_space(tmp_path / "s.yaml", tmp_path / "shards", tmp_path)
    space = load_space(path)
    assert [(t.label, t.seed) for t in space.trials()] == [
        ("fashion-mnist-resnet20 lr=0.1", 0), ("fashion-mnist-resnet20 lr=0.1", 1),
        ("fashion-mnist-resnet20 lr=0.05", 0), ("fashion-mnist-resnet20 lr=0.05", 1),
    ]
    assert load_space(path, ["seeds={range: [3, 6]}"]).seeds == [3, 4, 5]
    assert load_space(path, ["seeds=0-2", "max_concurrent=4"]).max_concurrent == 4


def test_random_choices_are_drawn_once_per_space(tmp_path):
    path = write_space(tmp_path / "s.yaml", tmp_path / "shards", tmp_path, grid={},
                       random={"train.lr": {"loguniform": [0.001, 0.1]}}, num_samples=3, random_seed=7)
    first = [t.overrides for t in load_space(path).trials()]
    assert first == [t.overrides for t in load_space(path).trials()]  # same trials on a re-run
    assert len({o for o in first}) == 3


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"preset": "cifar-resnet/nope"}, "unknown preset: 'cifar-resnet/nope'"),
        ({"grid": {"train.lrr": [0.1]}}, "unknown config key 'train.lrr'"),
        ({"seedz": [1]}, "unknown field 'seedz' (did you mean: seeds"),
        ({"preset": None}, "space names no preset"),
        ({"seeds": []}, "'seeds' is empty"),
    ],
)
def test_bad_space_is_refused_before_any_trial(tmp_path, fields, message):
    path = write_space(tmp_path / "s.yaml", tmp_path / "shards", tmp_path, **fields)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert message in str(info.value)


@pytest.fixture(scope="module")
def swept(fashion_shards, ray_cluster, tmp_path_factory):
    """A 2-value x 2-seed sweep of the tiny preset, run once for the tests below.

    It runs from its own working directory with the default (relative) MLflow
    file and checkpoint folder: trials run elsewhere and must still log here.
    """
    workdir = tmp_path_factory.mktemp("sweep")
    path = write_space(workdir / "space.yaml", fashion_shards, workdir, default_locations=True)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        space = load_space(path)
        summary = run_sweep(space)
        yield workdir, path, space, summary
    finally:
        os.chdir(cwd)


def mlflow_client(workdir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def test_sweep_runs_children_under_a_parent(swept):
    workdir, _, _, summary = swept
    assert summary.started == 4 and summary.skipped == 0 and not summary.failed
    client = mlflow_client(workdir)
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "tiny-sweep"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 4
    assert {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.params["train.lr"] for c in children} == {"0.1", "0.05"}
    assert {c.data.params["seed"] for c in children} == {"0", "1"}
    for child in children:  # the same metrics as a single `raysys train` run
        assert {"train/loss", "test/acc", "test/count", "train/lr"} <= set(child.data.metrics)
    # each run is tagged with its row, and its name says the row
    lr = {c.data.tags["raysys.row"]: c.data.params["train.lr"] for c in children}
    assert lr == {"fashion-mnist-resnet20 lr=0.1": "0.1", "fashion-mnist-resnet20 lr=0.05": "0.05"}
    assert all(c.data.tags["raysys.run_name"].startswith(f"fashion-mnist-resnet20-lr{c.data.params['train.lr']}-seed")
               for c in children)
    # the parent carries each row's mean over seeds, sortable in the runs table
    assert 0 <= parent.data.metrics["row/fashion-mnist-resnet20-lr0.1/test_acc_mean"] <= 1
    assert parent.data.metrics["row/fashion-mnist-resnet20-lr0.05/test_acc_n"] == 2
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"space.yaml", "summary.csv", "summary.md"} <= artifacts


def test_running_a_finished_sweep_again_trains_nothing(swept, monkeypatch):
    workdir, _, space, summary = swept
    monkeypatch.chdir(workdir)
    again = run_sweep(space)
    assert again.started == 0 and again.skipped == 4
    assert again.parent_run_id == summary.parent_run_id
    client = mlflow_client(workdir)
    parent = client.get_run(summary.parent_run_id)
    assert len(client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")) == 4


def test_report_numbers_match_mlflow(swept, monkeypatch):
    import csv
    import statistics

    from pipelines.report.engine import REPORTS, ReportDefinition, build_report

    workdir, path, _, summary = swept
    monkeypatch.chdir(workdir)
    REPORTS.add("tiny", ReportDefinition("tiny", "tiny sweep", "unused.yaml", published={"fashion-mnist-resnet20 lr=0.1": 50.0}))
    try:
        report = build_report("tiny", workdir / "reports", space_path=path)
    finally:
        REPORTS._items.pop("tiny")
    client = mlflow_client(workdir)
    children = client.search_runs([client.get_run(summary.parent_run_id).info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'")
    by_lr = {}
    for child in children:
        by_lr.setdefault(child.data.params["train.lr"], []).append(child.data.metrics["test/acc"] * 100)
    with open(workdir / "reports" / "tiny" / "table.csv") as handle:
        table = {row["row"]: row for row in csv.DictReader(handle)}
    for lr, values in by_lr.items():
        row = table[f"fashion-mnist-resnet20 lr={lr}"]
        assert float(row["mean"]) == pytest.approx(statistics.fmean(values), abs=1e-4)
        assert float(row["std"]) == pytest.approx(statistics.stdev(values), abs=1e-4)
        assert row["n"] == "2" and row["missing_seeds"] == ""
    assert float(table["fashion-mnist-resnet20 lr=0.1"]["difference"]) == pytest.approx(
        float(table["fashion-mnist-resnet20 lr=0.1"]["mean"]) - 50.0, abs=1e-3)
    for name in ("table.md", "curves.png", "curves.pdf", "headline.png", "headline.pdf"):
        assert (workdir / "reports" / "tiny" / name).stat().st_size > 0
    logged = {a.path for a in client.list_artifacts(summary.parent_run_id, "report")}
    assert "report/headline.png" in logged and "report/table.md" in logged
    assert report.missing == {}


def test_report_lists_missing_runs_instead_of_averaging_fewer(swept, monkeypatch):
    from pipelines.report.engine import REPORTS, ReportDefinition, build_report

    workdir, path, _, _ = swept
    monkeypatch.chdir(workdir)
    REPORTS.add("tiny-more", ReportDefinition("tiny-more", "tiny sweep, 3 seeds", "unused.yaml"))
    try:
        report = build_report("tiny-more", workdir / "reports", space_path=path, space_overrides=["seeds=[0, 1, 2]"], log_to_mlflow=False)
    finally:
        REPORTS._items.pop("tiny-more")
    assert report.missing == {"fashion-mnist-resnet20 lr=0.1": [2], "fashion-mnist-resnet20 lr=0.05": [2]}
    text = (workdir / "reports" / "tiny-more" / "table.md").read_text()
    assert "| 2/3 |" in text and "**Incomplete:** 2 runs missing" in text


def test_a_failing_trial_does_not_stop_the_others(fashion_shards, ray_cluster, workdir):
    from mlflow.tracking import MlflowClient

    path = write_space(workdir / "space.yaml", fashion_shards, workdir, name="nan-sweep", seeds=[0],
                       grid={"train.lr": [1e30, 0.1]})
    space = load_space(path, ["train.scheduler=constant", "failure.max_failures=0"])
    summary = run_sweep(space)
    assert summary.started == 2
    [failed] = summary.failed
    assert "lr=1e+30" in failed.trial.label and "non-finite loss" in failed.reason
    assert [o.status for o in summary.outcomes if o is not failed] == ["finished"]
    parent = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(summary.parent_run_id)
    assert parent.info.status == "FAILED"
    assert "1 of 2 trials failed" in parent.data.tags["raysys.failure_reason"]
