"""Reports of MIMOConv (Table 1) and its speed/accuracy trade-off figure.

The table is test accuracy at the model's capacity N, with the dynamic model's
accuracy at sup_low (n = 1) as a further column. The figure plots accuracy
against throughput for every superposition n that ``python -m raysys eval <run>``
measured (metrics ``eval_dynamic_n<n>_top1`` / ``_images_per_sec``), one point per
(row, n), averaged over seeds: the slow/normal/fast modes of the dynamic model
and the static N=1/2/4 models.

Published numbers: Table 1's per-model numbers could not be retrieved
(docs/mimoconv.md), so no row has one; the abstract's anchors are quoted. They were
measured with BatchNorm's batch statistics (docs/fidelity.md); the sweeps' presets
evaluate with running statistics unless ``mimo.eval_batch_stats=true``.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Dict, List, Tuple

from pipelines.report.engine import Column, ReportDefinition, register_report
from raysys.track import metric_names, runs

ABSTRACT = ("Table 1 per-model numbers not retrieved; the abstract reports a 2-4x speedup at an accuracy "
            "delta within [+0.68, -3.18] points of WRN-28-10 on CIFAR-10/100 (Menet et al., NeurIPS 2023), measured "
            "with BatchNorm batch statistics (the original never calls model.eval(); raysys: mimo.eval_batch_stats=true)")
MAX_N = 16


def mode_points(report) -> Dict[str, List[Tuple[int, float, float, int]]]:
    """row label -> [(n, mean top-1 %, mean images/s, seeds)] over the runs with eval metrics."""
    client = runs.client(report.tracking_uri)
    points: Dict[str, List[Tuple[int, float, float, int]]] = {}
    for row in report.rows:
        per_mode: Dict[int, List[Tuple[float, float]]] = {}
        for seed_run in row.runs:
            if not seed_run.run_id:
                continue
            metrics = client.get_run(seed_run.run_id).data.metrics
            for n in range(1, MAX_N + 1):
                top1 = metric_names.value(metrics, f"eval_dynamic_n{n}_top1")
                speed = metric_names.value(metrics, f"eval_dynamic_n{n}_images_per_sec")
                if top1 is not None and speed is not None:
                    per_mode.setdefault(n, []).append((top1, speed))
        if per_mode:
            points[row.label] = [
                (n, statistics.fmean(v[0] for v in values), statistics.fmean(v[1] for v in values), len(values))
                for n, values in sorted(per_mode.items())
            ]
    return points


def speed_accuracy(report, out: Path) -> List[Path]:
    """Top-1 against forward throughput per superposition n (speed_accuracy.png/.pdf/.csv)."""
    from pipelines.report.figures import finish_axes, log_x, no_runs_entry, plt, save_figure

    points = mode_points(report)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["row,superposition,top1,images_per_sec,seeds"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, modes in points.items():
        seeds = max(p[3] for p in modes)
        ax.plot([p[2] for p in modes], [p[1] for p in modes], marker="o", label=f"{label} ({seeds} seed{'s' if seeds != 1 else ''})")
        for n, top1, speed, seeds in modes:
            ax.annotate(f"n={n}", (speed, top1), textcoords="offset points", xytext=(4, 4), fontsize=7)
            lines.append(f"{label},{n},{top1:.4f},{speed:.2f},{seeds}")
    for row in getattr(report, "rows", ()):
        if row.label not in points:
            no_runs_entry(ax, row.label, "no runs" if not row.values else "not evaluated")
    log_x(ax, [p[2] for modes in points.values() for p in modes])
    ax.margins(x=0.1, y=0.1)  # room for the n= labels beside the outermost points
    paper = report.definition.title.partition(":")[0]
    finish_axes(ax, title=f"{paper}: top-1 against throughput per superposition n",
                xlabel="forward throughput, images/s per worker (log)", ylabel="test top-1 accuracy (%)",
                empty_note="no throughput measured yet:\nrun `python -m raysys eval <run>` on the trained runs")
    (out / "speed_accuracy.csv").write_text("\n".join(lines) + "\n")
    return [*save_figure(fig, out, "speed_accuracy"), out / "speed_accuracy.csv"]


for _dataset, _label in (("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100")):
    register_report(ReportDefinition(
        name=f"mimoconv-{_dataset}",
        title=f"MIMOConv Table 1, {_label}: test accuracy % at capacity N",
        space=f"mimoconv-{_dataset}.yaml",
        published_source=ABSTRACT,
        columns=(Column("accuracy at sup_low (dynamic: n=1)", "test_sup_low_acc"),),
        figures=(speed_accuracy,),
    ))
