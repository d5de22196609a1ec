"""Reports of "Just a Matter of Scale?" (STIR), one per dataset: ``python -m raysys report stir-<data>``.

The original's workflow: export the runs, keep per model and scenario the lr
with the higher median best_acc over seeds 1-5, then plot. So this report is
built from the export records (MLflow searched by params, every FINISHED STIR
run of the dataset), not from the space's grid; of those, only the members of
the chosen ``stir-<data>`` sweep and of the last ``stir-lr-selection-<data>``
sweep, without stale ones (:mod:`pipelines.report.membership`):

- ``table.md/csv``: test accuracy per model and scenario at the kept lr,
  mean ± std over seeds, missing seeds listed, the original's published mean
  (:mod:`pipelines.report.stir_published`) beside it (the engine's table);
- ``clean.csv`` (the kept runs, the original's columns), ``lr_selection.csv``;
- Fig. 4 ``hyperparams``, Fig. 5 ``generalization``, Table 2 ``time``
  (:mod:`pipelines.report.stir_figures`), Fig. 6 ``stir_equivariance`` and
  Fig. 7 ``stir_indices`` (:mod:`pipelines.report.stir_analysis`).
"""
from __future__ import annotations

import contextlib
import os
from functools import partial
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from pipelines.report import membership, stir_figures, stir_published
from pipelines.report.stir_analysis import equivariance_figure, indices_figure
from pipelines.report.engine import Report, ReportDefinition, RowResult, SeedRun, find_sweep, register_report, write_tables
from pipelines.report.stir_runs import DATASETS, search_records, select_lr, write_choices_csv, write_clean_csv
from raysys.config.loader import load_config, parse_override
from raysys.track import identity, runs
from raysys.tune.space import load_space

TITLE = "Just a Matter of Scale? (STIR {data})"
# Config keys of a space row -> the original's params, to know which (model, scenario) rows the report covers.
ROW_KEYS = {"model.name": "model", "stir.evaluation": "evaluation", "stir.kernel_size": "kernel_size",
            "stir.interpolation": "interpolation"}


@contextlib.contextmanager
def _quiet_downloads():
    """No MLflow progress bar for each of the thousands of small artifacts the figures read."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _space_rows(space) -> List[dict]:
    """Each space row's model, scenario, kernel size and interpolation (the original's param values)."""
    bases, out = {}, []
    for row in space.rows:
        if row.preset not in bases:
            bases[row.preset] = load_config(row.preset)
        base = bases[row.preset]
        values = {"model": base.model.name, "evaluation": base.stir.evaluation,
                  "kernel_size": base.stir.kernel_size, "interpolation": base.stir.interpolation}
        for item in row.overrides:
            key, value = parse_override(item)
            if key in ROW_KEYS:
                values[ROW_KEYS[key]] = value
        values["model"] = str(values["model"]).removeprefix("stir_")
        values["evaluation"] = int(values["evaluation"])
        out.append({k: str(v) if k in ("kernel_size", "interpolation") else v for k, v in values.items()})
    return out


def lr_selection_space(data: str) -> str:
    """The space name of the dataset's lr-selection sweep (seeds 1-5 of both lrs)."""
    return f"stir-lr-selection-{data}"


def sweep_records(records: List[dict], sweep: membership.Sweep, member_runs: list, client, exp_id: Optional[str],
                  data: str) -> List[dict]:
    """The records a report of ``sweep`` may use: its members and the last lr-selection sweep's.

    The lr is chosen on seeds 1-5 of both lrs, which the lr-selection sweep trained; a
    sweep of only the kept lrs (``stir export --space-out``) adopts just the kept lr's.
    Old stores (no membership recorded) keep every record, as before.
    """
    if not sweep.enforced:
        return records
    ids = {run.info.run_id for run in member_runs}
    selection_parents = membership.sweep_parents(client, exp_id, lr_selection_space(data))
    if selection_parents:
        ids |= {run.info.run_id for run in membership.members(client, exp_id, selection_parents[0].info.run_id)}
    return [r for r in records if r["run_id"] in ids]


def split_stale(records: List[dict], space, experiment: str) -> Tuple[List[dict], List[dict]]:
    """(records whose config fingerprint is the space's or unrecorded, stale records)."""
    name_of = lambda r: r.get(f"tags.{runs.RUN_NAME_TAG}") or r.get("tags.mlflow.runName", "")  # noqa: E731
    marked = {name_of(r) for r in records if r.get(f"tags.{identity.FINGERPRINT_TAG}")}
    if not marked:
        return records, []
    expected = membership.expected_fingerprints(space, experiment, marked)
    kept, stale = [], []
    for record in records:
        recorded = record.get(f"tags.{identity.FINGERPRINT_TAG}", "")
        want = expected.get(name_of(record))
        (stale if recorded and want and recorded not in identity.accepted(want) else kept).append(record)
    return kept, stale


def build_stir_report(definition: ReportDefinition, out: Path, *, data: str, space_path: Optional[Path] = None,
                      space_overrides: Sequence[str] = (), tracking_uri: str = "",
                      sweep_run: str = "") -> Tuple[Report, List[Path]]:
    """Records of the sweep -> lr selection -> the table, the export, the figures; the Report the engine summarises."""
    path = space_path or definition.space_path()
    sweep, member_runs, effective, uri, exp_id = find_sweep(path, space_overrides, tracking_uri, sweep_run)
    space = load_space(path, effective, check_trials=False)
    experiment = space.experiment_name()
    settings = _space_rows(space)
    wanted = {(s["kernel_size"], s["interpolation"]) for s in settings}
    mlflow_client = runs.client(uri)
    records = search_records(uri, experiment, data=data) if exp_id is not None else []
    records = [r for r in records if (str(r.get("params.kernel_size")), str(r.get("params.interpolation"))) in wanted]
    records = sweep_records(records, sweep, member_runs, mlflow_client, exp_id, data)
    records, stale_records = split_stale(records, space, experiment)
    selection = select_lr(records)

    by_config = stir_figures.seeds_present(selection.records)
    lrs = {(c.key[1], c.key[2]): c.lr for c in selection.choices}
    paper = {k: v for k, v in stir_published.published(data).items() if (k[3], k[4]) in wanted}
    cells = stir_published.by_cell(paper)  # (data, model, evaluation) -> the original's result
    rows, seen, other_lr = [], set(), []
    for setting in settings:
        key = (setting["model"], setting["evaluation"])
        if key in seen:
            continue
        seen.add(key)
        present = by_config.get(key, {})
        seed_runs = []
        for seed in space.seeds:
            record = present.get(seed)
            if record is None:
                seed_runs.append(SeedRun(seed, ""))
            else:
                name = record.get("tags.raysys.run_name") or record.get("tags.mlflow.runName", "")
                verdict = identity.SAME if record.get(f"tags.{identity.FINGERPRINT_TAG}") else identity.UNVERIFIED
                seed_runs.append(SeedRun(seed, name, record["run_id"], float(record["metrics.test_acc"]), identity=verdict))
        lr = lrs.get(key)
        label = f"{key[0]} scenario {key[1]}" + (f" lr={lr:g}" if lr is not None else "")
        theirs = paper.get((data, *key, setting["kernel_size"], setting["interpolation"]))
        rows.append(RowResult(label, seed_runs, None if theirs is None else theirs.test_acc_mean))
        if theirs is not None and lr is not None and lr != theirs.lr:
            other_lr.append(f"{label} (the original kept lr={theirs.lr:g})")
    used = {seed_run.run_name: seed_run.run_id for row in rows for seed_run in row.runs if seed_run.run_id}
    stale = []
    for record in stale_records:
        name = record.get("tags.raysys.run_name") or record.get("tags.mlflow.runName", "")
        label = f"{record['params.model']} scenario {record['params.evaluation']} lr={float(record['params.lr']):g}"
        stale.append({"row": label, "seed": int(float(record["params.seed"])), "run_id": record["run_id"],
                      "run_name": name, "replaced_by": used.get(name, "")})
    report = Report(definition, space, rows, uri, sweep.run_id, sweep, stale)

    out.mkdir(parents=True, exist_ok=True)
    title = definition.title
    files = write_tables(report, out)
    if other_lr:
        with open(out / "table.md", "a") as handle:
            handle.write(f"\nKept another lr than the original (published: the original's lr): {'; '.join(other_lr)}.\n")
    files.append(write_clean_csv(selection.records, out / "clean.csv"))
    files.append(write_choices_csv(selection.choices, out / "lr_selection.csv"))
    files += stir_figures.hyperparam_figure(records, selection, out, title=f"{title}: test accuracy per lr (Fig. 4)",
                                            data=data, published=cells)
    files += stir_figures.time_table(selection.records, out, data=data, title=f"{title}: time per epoch (Table 2)",
                                     published=cells)
    with _quiet_downloads():
        files += stir_figures.generalization_figure(selection.records, uri, out, data=data,
                                                    title=f"{title}: accuracy per object scale (Fig. 5)")
        files += equivariance_figure(selection.records, uri, out, published=cells)
        files += indices_figure(selection.records, uri, out)
    return report, files


for _data in DATASETS:
    register_report(ReportDefinition(
        name=f"stir-{_data}",
        title=TITLE.format(data=_data),
        space=f"stir-{_data}.yaml",
        scale=1.0,  # STIR logs accuracies in %
        published_source=stir_published.SOURCE,
        builder=partial(build_stir_report, data=_data),
    ))
