"""The sweep's live table fed by Ray Tune: a Tune callback on the sweep's driver.

Each Tune trial trains one run, or a pack of runs one after another (``seeds_per_trial``,
whose reports name their run: :data:`raysys.train.run_folder.RUN_NAME_KEY`); its results
are Ray Train's epoch reports (through ``TuneReportCallback``). The callback turns Tune's
events into the table's (:mod:`raysys.console.sweep_table`); the sweep closes the table
with what MLflow holds.
"""
from __future__ import annotations

import io
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

from raysys.console import is_verbose, rayout
from raysys.console.sweep_table import SweepTable, TableRow
from raysys.driver.failure import reason_from_text
from raysys.track import metric_names, runs
from raysys.train.run_folder import RUN_NAME_KEY

TABLE_METRIC = "test/acc"  # the metric each row shows


def metric_value(metrics: Mapping[str, Any], name: str = TABLE_METRIC) -> Optional[float]:
    """``name`` in a run's or a report's metrics, under its grouped or its flat name; None without it."""
    value = metric_names.value(dict(metrics), name)
    return None if value is None else float(value)


def make_table(done: Sequence[tuple], pending: Sequence[tuple], *, live: Optional[bool] = None, stream=None) -> SweepTable:
    """The table of a sweep: ``done`` (trial, cfg, run) skipped, ``pending`` (trial, cfg, _) queued."""
    rows = []
    for trial, cfg, run in done:
        name = run.data.tags.get(runs.RUN_NAME_TAG, cfg.run_name) if run is not None else cfg.run_name
        rows.append(TableRow(str(name), trial.label, trial.seed, state="skipped",
                             value=metric_value(run.data.metrics) if run is not None else None))
    for trial, cfg, _ in pending:
        rows.append(TableRow(str(cfg.run_name), trial.label, trial.seed, epochs=int(cfg.train.epochs)))
    return SweepTable(rows, metric=metric_names.grouped(TABLE_METRIC), live=live, stream=stream)


def trial_error(trial) -> str:
    """A failed Tune trial's reason in one line: its error, else its error file's last line."""
    error = trial.get_error() if hasattr(trial, "get_error") else None
    if error is not None:
        return reason_from_text(str(error), type(error).__name__)
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        return reason_from_text(Path(path).read_text(errors="replace"), "failed")
    return "failed (the reason follows in the summary)"


def tune_callback(table: SweepTable):
    """A ``ray.tune.Callback`` that tells ``table`` each trial's start, epochs, end and failure.

    A pack's trial moves from run to run: a report naming another run ends the one before.
    """
    import ray.tune

    current: Dict[int, str] = {}  # trial -> the run it trains now (a pack's changes)

    def key(trial) -> str:
        return current.get(id(trial), str(trial.config["trial"]["name"]))

    class TableCallback(ray.tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            table.started(key(trial))

        def on_trial_result(self, iteration, trials, trial, result: Dict[str, Any], **info):
            name = str(result.get(RUN_NAME_KEY) or key(trial))
            if name != key(trial):
                table.finished(key(trial))  # with its latest value
                current[id(trial)] = name
                table.started(name)
            if "epoch" in result:
                table.epoch(name, int(result["epoch"]), value=metric_value(result))

        def on_trial_complete(self, iteration, trials, trial, **info):
            table.finished(key(trial), metric_value(trial.last_result or {}))

        def on_trial_error(self, iteration, trials, trial, **info):
            table.failed(key(trial), trial_error(trial))

    return TableCallback()


@contextmanager
def tune_output_to_log() -> Iterator[None]:
    """Tune's own console output (its experiment box, TensorBoard advice, trial lines: ``print`` calls
    on stdout, whatever ``verbose``) into Ray's log file while the Tuner runs; ``--verbose`` keeps it."""
    path = rayout.log_path()
    if is_verbose():
        yield
        return
    with (open(path, "a", encoding="utf-8") if path else io.StringIO()) as sink, redirect_stdout(sink):
        yield
