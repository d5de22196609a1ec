"""The report engine: MLflow runs -> a paper's table (Markdown, CSV) and figures.

A report is a small registered :class:`ReportDefinition`: the tune space whose
rows and seeds it covers, the metric, and the published numbers. It is built
from one sweep of that space (the last one, or ``sweep_run``): the space is
loaded with the overrides the sweep ran with, then the report's own (which can
only narrow the trials shown). For every row and seed the engine computes the
config and run name ``raysys train`` gives it and uses the FINISHED member run
of the sweep with that name and config fingerprint
(:mod:`pipelines.report.membership`), and aggregates over seeds (mean ± std,
n). Missing runs are listed, never silently averaged away; stale runs (same
name, another config) are listed and never used.
"""
from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from pipelines.report import membership
from raysys.config.loader import load_config
from raysys.errors import ConfigError
from raysys.registry import Registry
from raysys.track import identity, metric_names, runs
from raysys.train.locations import pin_locations
from raysys.tune.space import Space, find_space, labelled_run_name, load_space



@dataclass(frozen=True)
class Column:
    """A further metric per row, beside the main one (e.g. the source and out-of-the-box accuracy)."""

    label: str
    metric: str
    published: Dict[str, float] = field(default_factory=dict)  # row label -> paper's number (shown scale)


@dataclass(frozen=True)
class ReportDefinition:
    """Which runs (a tune space), which metric, which layout, the published numbers."""

    name: str
    title: str
    space: str  # file name in tune_spaces/
    metric: str = "test_acc"
    scale: float = 100.0  # the metric is a fraction; tables show percent
    published: Dict[str, float] = field(default_factory=dict)  # row label -> paper's number (shown scale)
    published_source: str = ""
    curve_metric: str = "test_acc"
    # Further metric columns (written to columns.md / columns.csv) and extra figures,
    # each figure a function (report, out folder) -> the files it wrote.
    columns: Tuple[Column, ...] = ()
    figures: Tuple[Callable[["Report", Path], List[Path]], ...] = ()
    # A report that is not row x seed by run name builds itself instead of collect/tables/figures:
    # builder(definition, out folder, space_path=, space_overrides=, tracking_uri=, sweep_run=) -> (Report, files written).
    builder: Optional[Callable[..., Tuple["Report", List[Path]]]] = None

    def space_path(self) -> Path:
        return find_space(self.space)


REPORTS: Registry[ReportDefinition] = Registry("report", discover=False)


def register_report(definition: ReportDefinition) -> ReportDefinition:
    REPORTS.add(definition.name, definition)
    return definition


@dataclass
class SeedRun:
    seed: int
    run_name: str
    run_id: str = ""
    value: Optional[float] = None
    extra: Dict[str, float] = field(default_factory=dict)  # column metric -> value (shown scale)
    identity: str = ""  # of the run used: identity.SAME or identity.UNVERIFIED (recorded before fingerprints)
    former_name: str = ""  # the name such a run had before run names said the row


@dataclass
class RowResult:
    label: str
    runs: List[SeedRun]
    published: Optional[float]

    @property
    def values(self) -> List[float]:
        return [r.value for r in self.runs if r.value is not None]

    @property
    def missing_seeds(self) -> List[int]:
        return [r.seed for r in self.runs if r.value is None]

    @property
    def mean(self) -> Optional[float]:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> Optional[float]:
        values = self.values
        if not values:
            return None
        return statistics.stdev(values) if len(values) > 1 else 0.0

    @property
    def difference(self) -> Optional[float]:
        return None if self.mean is None or self.published is None else self.mean - self.published

    def column_values(self, metric: str) -> List[float]:
        return [r.extra[metric] for r in self.runs if metric in r.extra]


@dataclass
class Report:
    definition: ReportDefinition
    space: Space
    rows: List[RowResult]
    tracking_uri: str
    parent_run_id: str = ""
    sweep: Optional[membership.Sweep] = None  # the sweep the runs were taken from
    # Runs of a cell's name whose config fingerprint differs: {"row", "seed", "run_id", "run_name", "replaced_by"}.
    stale: List[dict] = field(default_factory=list)

    @property
    def missing(self) -> Dict[str, List[int]]:
        return {row.label: row.missing_seeds for row in self.rows if row.missing_seeds}

    @property
    def unverified(self) -> List[dict]:
        """The runs used that were recorded before config fingerprints (matched by name only)."""
        return [{"row": row.label, "seed": r.seed, "run_id": r.run_id} for row in self.rows for r in row.runs
                if r.run_id and r.identity == identity.UNVERIFIED]


def find_sweep(space_path: Path, space_overrides: Sequence[str] = (), tracking_uri: str = "", sweep_run: str = ""):
    """(sweep, its member runs, effective space overrides, tracking URI, experiment id or None).

    The effective overrides are the sweep's recorded ones followed by ``space_overrides``.
    """
    first = load_space(space_path, space_overrides, check_trials=False)
    experiment = first.experiment_name()
    row = first.rows[0]
    uri = tracking_uri or pin_locations(load_config(row.preset, [*row.overrides, f"seed={first.seeds[0]}"])).tracking.uri
    client = runs.client(uri)
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found is not None else None
    sweep, members = membership.choose_sweep(client, exp_id, first.name, experiment, sweep_run)
    return sweep, members, [*sweep.overrides, *space_overrides], uri, exp_id


def collect(definition: ReportDefinition, *, space_path: Optional[Path] = None, space_overrides: Sequence[str] = (),
            tracking_uri: str = "", sweep_run: str = "") -> Report:
    """Find every (row, seed) run of the report among the sweep's runs and read its final metric."""
    path = space_path or definition.space_path()
    sweep, members, effective, uri, exp_id = find_sweep(path, space_overrides, tracking_uri, sweep_run)
    space = load_space(path, effective)
    experiment = space.experiment_name()
    rows, expected = [], {}
    for row in space.rows:
        seed_runs = []
        for seed in space.seeds:
            cfg = pin_locations(load_config(row.preset, [*row.overrides, f"seed={seed}", f"tracking.experiment={experiment}"]))
            seed_run = SeedRun(seed, labelled_run_name(row.label, row.preset, cfg.run_name), former_name=cfg.run_name)
            expected[row.label, seed] = identity.fingerprint(cfg)
            seed_runs.append(seed_run)
        rows.append(RowResult(row.label, seed_runs, definition.published.get(row.label)))
    mlflow_client = runs.client(uri)
    stale = []
    if exp_id is not None:
        named = membership.by_name(members)
        for row in rows:
            for seed_run in row.runs:
                candidates = []
                # the trial's name, then the name it had before run names said the row
                for name in dict.fromkeys([seed_run.run_name, seed_run.former_name]):
                    if sweep.enforced:
                        candidates = candidates or named.get(name, [])
                    else:  # a store from before sweep membership: match by name, as then
                        candidates = candidates or membership.named_finished(mlflow_client, exp_id, name)
                chosen = membership.pick(candidates, expected[row.label, seed_run.seed])
                found = chosen.run
                main = None if found is None else metric_names.value(found.data.metrics, definition.metric)
                if main is not None:  # the grouped name (test/acc) or, in an older run, the flat one (test_acc)
                    seed_run.run_id = found.info.run_id
                    seed_run.identity = chosen.identity
                    seed_run.value = main * definition.scale
                    for column in definition.columns:
                        extra = metric_names.value(found.data.metrics, column.metric)
                        if extra is not None:
                            seed_run.extra[column.metric] = extra * definition.scale
                stale += [{"row": row.label, "seed": seed_run.seed, "run_id": run.info.run_id,
                           "run_name": seed_run.run_name, "replaced_by": seed_run.run_id} for run in chosen.stale]
    return Report(definition, space, rows, uri, sweep.run_id, sweep, stale)


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_tables(report: Report, out: Path) -> List[Path]:
    """table.md and table.csv: ours (mean ± std, n) beside the published number."""
    out.mkdir(parents=True, exist_ok=True)
    d = report.definition
    header = ["row", "mean", "std", "n", "seeds", "missing_seeds", "published", "difference"]
    with open(out / "table.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in report.rows:
            writer.writerow([
                row.label, _fmt(row.mean, 4), _fmt(row.std, 4), len(row.values), len(row.runs),
                " ".join(map(str, row.missing_seeds)), _fmt(row.published, 4), _fmt(row.difference, 4),
            ])
    unit = " ×{:g}".format(d.scale) if d.scale != 1 else ""
    lines = [f"# {d.title}", "", f"Metric: `{metric_names.grouped(d.metric)}`{unit}, mean ± std over seeds {report.space.seeds}.", ""]
    lines += provenance_lines(report)
    if d.published_source:
        lines += [f"Published: {d.published_source}.", ""]
    lines += ["| row | ours | n | published | Δ | missing seeds |", "|---|---|---|---|---|---|"]
    for row in report.rows:
        ours = f"{row.mean:.2f} ± {row.std:.2f}" if row.mean is not None else "—"
        delta = f"{row.difference:+.2f}" if row.difference is not None else "—"
        published = _fmt(row.published) or "—"
        missing = ", ".join(map(str, row.missing_seeds)) or "—"
        lines.append(f"| {row.label} | {ours} | {len(row.values)}/{len(row.runs)} | {published} | {delta} | {missing} |")
    if report.missing:
        lines += ["", f"**Incomplete:** {sum(map(len, report.missing.values()))} runs missing; rows average only the seeds present (n)."]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    return [out / "table.md", out / "table.csv", *write_columns(report, out)]


def provenance_lines(report: Report) -> List[str]:
    """Which sweep the runs come from, and the runs left out as stale or used unverified (table.md's header)."""
    lines = []
    if report.sweep is not None:
        lines += [f"Runs: {report.sweep.describe()}.", ""]
    for item in report.stale:
        replaced = f", replaced by run `{item['replaced_by']}`" if item["replaced_by"] else ""
        lines.append(f"- **Stale** (another config under this run name; not used): {item['row']}, "
                     f"seed {item['seed']}, run `{item['run_id']}`{replaced}")
    if report.stale:
        lines.append("")
    unverified = report.unverified
    if unverified:
        lines += [f"Unverified: {len(unverified)} of the runs used were recorded before config fingerprints "
                  "(matched by run name only).", ""]
    return lines


def write_columns(report: Report, out: Path) -> List[Path]:
    """columns.md and columns.csv: every row's further metrics, ours beside published."""
    d = report.definition
    if not d.columns:
        return []
    main = Column(d.metric, d.metric, d.published)
    columns = [*d.columns, main]
    header = ["row"] + [f"{c.label} {part}" for c in columns for part in ("mean", "std", "n", "published")]
    table = ["| row | " + " | ".join(f"{c.label} (ours / published)" for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    with open(out / "columns.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in report.rows:
            cells, csv_row = [], [row.label]
            for column in columns:
                values = row.values if column is main else row.column_values(column.metric)
                mean = statistics.fmean(values) if values else None
                std = (statistics.stdev(values) if len(values) > 1 else 0.0) if values else None
                published = column.published.get(row.label)
                csv_row += [_fmt(mean, 4), _fmt(std, 4), len(values), _fmt(published, 4)]
                ours = f"{mean:.2f} ± {std:.2f}" if mean is not None else "—"
                cells.append(f"{ours} / {_fmt(published) or '—'}")
            writer.writerow(csv_row)
            table.append(f"| {row.label} | " + " | ".join(cells) + " |")
    title = f"# {d.title}: all columns"
    (out / "columns.md").write_text("\n".join([title, "", f"Metrics ×{d.scale:g}, mean ± std over seeds {report.space.seeds}.", "", *table]) + "\n")
    return [out / "columns.md", out / "columns.csv"]


def build_report(name: str, out: Path, *, space_path: Optional[Path] = None, space_overrides: Sequence[str] = (),
                 tracking_uri: str = "", sweep_run: str = "", log_to_mlflow: bool = True) -> Report:
    """Collect, write the tables and figures to ``out``, and log them to the sweep's parent run."""
    from pipelines.report import figures

    definition = REPORTS.get(name)
    target = Path(out) / name
    if definition.builder is not None:
        report, files = definition.builder(definition, target, space_path=space_path, space_overrides=space_overrides,
                                           tracking_uri=tracking_uri, sweep_run=sweep_run)
    else:
        report = collect(definition, space_path=space_path, space_overrides=space_overrides, tracking_uri=tracking_uri,
                         sweep_run=sweep_run)
        files = write_tables(report, target)
        files += figures.draw_all(report, target)
    if log_to_mlflow and report.parent_run_id:
        runs.log_artifact_files(report.tracking_uri, report.parent_run_id, files, "report")
    return report


def summary(report: Report, out: Path) -> dict:
    return {
        "report": report.definition.name,
        "out": str(Path(out) / report.definition.name),
        "parent_run_id": report.parent_run_id,
        "sweep": report.sweep.as_dict() if report.sweep is not None else None,
        "membership": report.sweep.membership if report.sweep is not None else None,
        "rows": [{"row": r.label, "mean": r.mean, "std": r.std, "n": len(r.values), "published": r.published} for r in report.rows],
        "missing": report.missing,
        "stale": report.stale,
        "unverified": report.unverified,
    }


def require_known(name: str) -> None:
    if name not in REPORTS:
        REPORTS.get(name)  # raises ConfigError with suggestions
    try:
        REPORTS.get(name).space_path()
    except ConfigError as exc:
        raise ConfigError(f"report {name!r}: {exc}") from None
