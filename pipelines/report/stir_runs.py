"""STIR runs in MLflow as export records, the paper's lr selection, and the clean.csv writer.

A record is one FINISHED STIR run (a run with params ``model``, ``data`` and
``evaluation``) in the layout of ``mlflow experiments csv`` / ``mlflow.search_runs``:
``run_id``, ``experiment_id``, ``status``, ``artifact_uri``, ``start_time``,
``end_time``, ``metrics.<name>`` (the latest value), ``params.<name>``,
``tags.<name>``; the original's metrics (``metrics.val_acc``, ...) read from either
spelling (``val/acc`` as raysys records it now, ``val_acc`` before). The original exported its runs this way and cleaned them with
``scripts/clean.py``: per dataset, model and scenario it keeps the learning rate
whose median ``best_acc`` (validation accuracy) over seeds 1-5 is higher, and
that lr's runs. :func:`select_lr` does the same; :func:`write_clean_csv` writes
the original's clean.csv columns; :func:`selected_space` a tune space that trains
only the kept lrs (the original's ``check_selected_runs``).
"""
from __future__ import annotations

import csv
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from raysys.errors import TrackingError, one_of
from raysys.track import metric_names

Record = Dict[str, Any]

DEFAULT_EXPERIMENT = "stir"  # the STIR presets' paper
# The header of the original's scripts/clean.csv, in its order.
CLEAN_COLUMNS = [
    "run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time",
    "metrics.train_loss", "metrics.test_acc", "metrics.train_time", "metrics.val_acc", "metrics.test_loss",
    "metrics.train_acc", "metrics.avg_time", "metrics.val_loss", "metrics.best_acc",
    "params.interpolation", "params.model", "params.kernel_size", "params.lr", "params.evaluation", "params.data",
    "params.seed",
    "tags.mlflow.source.name", "tags.mlflow.user", "tags.mlflow.source.git.commit", "tags.mlflow.source.type",
]
ORIGINAL_METRICS = [c.removeprefix("metrics.") for c in CLEAN_COLUMNS if c.startswith("metrics.")]
DATASETS = ("emoji", "mnist", "trafficsign", "aerial")
MODELS = ("standard", "pixel_pool", "energy_pool", "slice_pool", "conv3d", "ensemble", "spatial_transform", "xu",
          "kanazawa", "hermite", "disco")
STIR_PARAMS = ("params.model", "params.data", "params.evaluation")
SELECTION_SEEDS = range(1, 6)  # the lr is chosen on seeds 1-5
SEARCH_PAGE = 1000


def seed_target(data: str) -> int:
    """Seeds per configuration in the paper: 50 for emoji, 25 for the others."""
    return 50 if data == "emoji" else 25


def _time(ms: Optional[int]) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(sep=" ", timespec="microseconds")


def record_of(run) -> Record:
    """An MLflow run as a record (the columns ``mlflow.search_runs`` gives)."""
    info, data = run.info, run.data
    record: Record = {
        "run_id": info.run_id, "experiment_id": info.experiment_id, "status": info.status,
        "artifact_uri": info.artifact_uri, "start_time": _time(info.start_time), "end_time": _time(info.end_time),
    }
    record.update({f"metrics.{k}": v for k, v in sorted(data.metrics.items())})
    for name in ORIGINAL_METRICS:  # the original's names, from the grouped (val/acc) or flat (val_acc) spelling
        found = metric_names.value(data.metrics, name)
        if found is not None:
            record[f"metrics.{name}"] = found
    record.update({f"params.{k}": v for k, v in sorted(data.params.items())})
    record.update({f"tags.{k}": v for k, v in sorted(data.tags.items())})
    return record


def is_stir(record: Record) -> bool:
    return all(record.get(key) not in (None, "") for key in STIR_PARAMS)


def search_records(tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT, *, data: str = "") -> List[Record]:
    """Every FINISHED STIR run of ``experiment`` (optionally of one dataset), newest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise TrackingError(f"MLflow experiment {one_of(experiment, names)} at {tracking_uri}")
    query = "attributes.status = 'FINISHED'" + (f" and params.data = '{data}'" if data else "")
    records, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], filter_string=query, max_results=SEARCH_PAGE,
                                  order_by=["attributes.start_time DESC"], page_token=token)
        records += [r for r in map(record_of, page) if is_stir(r)]
        token = page.token
        if not token:
            return records


def _number(record: Record, key: str) -> Optional[float]:
    value = record.get(key)
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def config_key(record: Record) -> Tuple[str, str, int, str, str]:
    """(data, model, evaluation, kernel_size, interpolation): runs that compete for one lr."""
    return (str(record["params.data"]), str(record["params.model"]), int(float(record["params.evaluation"])),
            str(record.get("params.kernel_size", "")), str(record.get("params.interpolation", "")))


def lr_of(record: Record) -> float:
    return float(record["params.lr"])


def seed_of(record: Record) -> int:
    return int(float(record["params.seed"]))


@dataclass
class LrChoice:
    """The lr kept for one configuration, with the medians it was chosen by."""

    key: Tuple[str, str, int, str, str]
    lr: Optional[float]  # None: no run with a best_acc at seeds 1-5
    medians: Dict[float, float] = field(default_factory=dict)  # lr -> median best_acc over seeds 1-5
    seeds: Dict[float, int] = field(default_factory=dict)  # lr -> runs at seeds 1-5
    kept: int = 0


@dataclass
class Selection:
    records: List[Record]
    choices: List[LrChoice]


def _order(key: Tuple[str, str, int, str, str]) -> tuple:
    data, model, evaluation, kernel, interp = key
    rank = lambda value, known: (known.index(value), "") if value in known else (len(known), value)  # noqa: E731
    return (rank(data, DATASETS), rank(model, MODELS), evaluation, kernel, interp)


def usable(records: Iterable[Record]) -> List[Record]:
    """Records with a test accuracy (the original drops the others), one per (config, lr, seed): the newest."""
    seen, out = set(), []
    for record in records:
        if _number(record, "metrics.test_acc") is None:
            continue
        ident = (config_key(record), lr_of(record), seed_of(record))
        if ident not in seen:
            seen.add(ident)
            out.append(record)
    return out


def select_lr(records: Iterable[Record]) -> Selection:
    """Per configuration, the lr with the higher median ``best_acc`` over seeds 1-5, and its runs.

    As the original's ``scripts/clean.py``: a tie keeps the smaller lr; the
    kept runs are that lr's seeds 1..50 (emoji) or 1..25 (the others).
    """
    groups: Dict[tuple, Dict[float, List[Record]]] = defaultdict(lambda: defaultdict(list))
    for record in usable(records):
        groups[config_key(record)][lr_of(record)].append(record)
    kept, choices = [], []
    for key in sorted(groups, key=_order):
        by_lr = groups[key]
        choice = LrChoice(key, None)
        for lr in sorted(by_lr):
            first = [v for r in by_lr[lr] if seed_of(r) in SELECTION_SEEDS
                     for v in [_number(r, "metrics.best_acc")] if v is not None]
            if first:
                choice.medians[lr] = statistics.median(first)
                choice.seeds[lr] = len(first)
        if choice.medians:
            choice.lr = max(sorted(choice.medians), key=lambda lr: choice.medians[lr])  # ties: the smaller lr
            runs = [r for r in by_lr[choice.lr] if 1 <= seed_of(r) <= seed_target(key[0])]
            choice.kept = len(runs)
            kept += runs
        choices.append(choice)
    return Selection(kept, choices)


def write_clean_csv(records: Sequence[Record], path: Path, columns: Sequence[str] = CLEAN_COLUMNS) -> Path:
    """The records as the original's clean.csv (written to a temporary file, then moved into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore", restval="")
        writer.writeheader()
        for record in records:
            writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
    os.replace(partial, path)
    return path


def write_choices_csv(choices: Sequence[LrChoice], path: Path) -> Path:
    """One row per configuration and lr: median best_acc over seeds 1-5, runs, and whether it was kept."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["data", "model", "evaluation", "kernel_size", "interpolation", "lr",
                         "median_best_acc_seeds_1_5", "runs_seeds_1_5", "selected", "runs_kept"])
        for choice in choices:
            if not choice.medians:
                writer.writerow([*choice.key, "", "", 0, 0, 0])
            for lr in sorted(choice.medians, reverse=True):
                selected = lr == choice.lr
                writer.writerow([*choice.key, f"{lr:g}", f"{choice.medians[lr]:.4f}", choice.seeds[lr],
                                 int(selected), choice.kept if selected else ""])
    return path


def selected_space(selection: Selection, data: str) -> Dict[str, Any]:
    """A tune space (as a mapping) training each configuration of ``data`` at its kept lr, seeds 1..50 or 1..25.

    Its trials have the same run names as the full space's (same preset and
    overrides), so a sweep of it skips the runs that already finished.
    """
    rows = []
    for choice in selection.choices:
        key_data, model, evaluation, kernel, interpolation = choice.key
        if key_data != data or choice.lr is None:
            continue
        label = f"{model} evaluation={evaluation} lr={choice.lr:g}"
        if (kernel, interpolation) != ("7", "bicubic"):
            label += f" k={kernel} {interpolation}"
        rows.append({"preset": f"stir/{data}", "label": label, "overrides": [
            f"model.name=stir_{model}", f"stir.evaluation={evaluation}", f"train.lr={choice.lr:g}",
            f"stir.kernel_size={kernel}", f"stir.interpolation={interpolation}"]})
    return {
        "name": f"stir-{data}",
        "description": f"STIR {data}: every model and scenario at the lr kept on seeds 1-5, seeds 1-{seed_target(data)}",
        "report": f"stir-{data}",
        "presets": rows,
        "seeds": f"1-{seed_target(data)}",
    }
