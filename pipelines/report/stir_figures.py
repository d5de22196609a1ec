"""The STIR paper's Fig. 4 (accuracy per lr), Fig. 5 (accuracy per object scale) and Table 2 (time per epoch).

Each reads export records (:mod:`pipelines.report.stir_runs`) and writes its
figure (png, pdf) or table (md) and a CSV of the numbers shown. As the
original's plots, the figures show the paper's six models; the CSVs hold
every model present. The original's published means
(:mod:`pipelines.report.stir_published`) are drawn beside ours where given.
"""
from __future__ import annotations

import csv
import io
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from pipelines.report.figures import finish_axes, legend_below, no_runs_entry, plt, save_figure
from pipelines.report.stir_published import Published
from pipelines.report.stir_runs import MODELS, Record, Selection, config_key, lr_of, seed_of, seed_target, usable
from raysys.families.stir.scenarios import ALL_SCALES, SCENARIOS

ACCURACY = "test accuracy (%)"
PUBLISHED_MARK = dict(marker="*", s=70, color="black", edgecolors="white", linewidths=0.5, zorder=5)
NO_RUNS_MARK = dict(marker="x", s=30, color="tab:gray", zorder=5)
PAPER_MODELS = ("standard", "pixel_pool", "slice_pool", "conv3d", "ensemble", "spatial_transform")
COLORS = dict(zip(PAPER_MODELS, ("tab:blue", "tab:green", "tab:orange", "tab:red", "tab:gray", "tab:purple")))
EVALUATIONS = (1, 2, 3, 4)
GENERALIZATION_PANELS = (1, 2, 3)  # the paper's Fig. 5; scenario 4 is in the CSV
TIME_EVALUATION = 2  # Table 2 times scenario 2 (Mid2Rest)


def _legend(mark: dict) -> dict:
    """A scatter style as Line2D keywords, for a legend handle."""
    return dict(marker=mark["marker"], color=mark["color"], markersize=np.sqrt(mark["s"]),
                markeredgecolor=mark.get("edgecolors", mark["color"]))


def _models(records: Sequence[Record]) -> List[str]:
    present = {str(r["params.model"]) for r in records}
    return [m for m in MODELS if m in present] + sorted(present - set(MODELS))


def _fmt(value: Optional[float], digits: int = 4) -> str:
    return "" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def _value(record: Record, metric: str) -> Optional[float]:
    value = record.get(f"metrics.{metric}")
    return None if value in (None, "") else float(value)


# Fig. 4 ---------------------------------------------------------------------------------------------------

def hyperparam_figure(records: Sequence[Record], selection: Selection, out: Path, *, title: str = "", data: str = "",
                      published: Optional[Mapping[tuple, Published]] = None) -> List[Path]:
    """Test accuracy over seeds per model, scenario and lr (boxes); the kept lr drawn with a thick edge.

    Every lr's runs at the paper's seeds (1..50 emoji, 1..25 the others), not only the kept ones.
    ``published`` ((data, model, evaluation) -> the original's result) puts its mean as a star at the
    original's lr; a model without runs in a scenario is a grey x on the axis.
    """
    published = published or {}
    records = [r for r in usable(records) if 1 <= seed_of(r) <= seed_target(str(r["params.data"]))]
    chosen = {c.key[1:3]: c.lr for c in selection.choices}  # (model, evaluation) -> lr
    medians = {(c.key[1], c.key[2], lr): m for c in selection.choices for lr, m in c.medians.items()}
    lrs = sorted({lr_of(r) for r in records}, reverse=True)
    cells: Dict[tuple, List[float]] = defaultdict(list)
    for record in records:
        cells[(record["params.model"], config_key(record)[2], lr_of(record))].append(_value(record, "test_acc"))
    rows = []
    for model in _models(records):
        for ev in EVALUATIONS:
            for lr in lrs:
                values = cells.get((model, ev, lr), [])
                if values:
                    rows.append([model, ev, f"{lr:g}", len(values), _fmt(float(np.median(values))),
                                 _fmt(float(np.mean(values))), _fmt(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0),
                                 _fmt(medians.get((model, ev, lr))), int(chosen.get((model, ev)) == lr)])
    with open(out / "hyperparams.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "evaluation", "lr", "n", "test_acc_median", "test_acc_mean", "test_acc_std",
                         "best_acc_median_seeds_1_5", "selected"])
        writer.writerows(rows)

    rng = np.random.default_rng(0)  # jitter of the dots: the same figure every time
    fig, axes = plt.subplots(1, len(EVALUATIONS), figsize=(12, 3.6), sharey=True)
    shown_lrs = sorted({*lrs, *(p.lr for p in published.values())}, reverse=True)  # the original's lr has a slot too
    lrs = [lr for lr in shown_lrs if lr in lrs]
    width = 0.8 / max(len(shown_lrs), 1)
    slot = lambda i, lr: i + (shown_lrs.index(lr) - (len(shown_lrs) - 1) / 2) * width  # noqa: E731
    for ax, ev in zip(axes, EVALUATIONS):
        for i, model in enumerate(PAPER_MODELS):
            theirs = published.get((data, model, ev))
            if theirs is not None:
                ax.scatter([slot(i, theirs.lr)], [theirs.test_acc_mean], **PUBLISHED_MARK)
            if not any(cells.get((model, ev, lr)) for lr in lrs):
                ax.scatter([i], [0.03], transform=ax.get_xaxis_transform(), **NO_RUNS_MARK)
            for j, lr in enumerate(lrs):
                values = cells.get((model, ev, lr), [])
                if not values:
                    continue
                x = slot(i, lr)
                kept = chosen.get((model, ev)) == lr
                box = ax.boxplot([values], positions=[x], widths=width * 0.85, showfliers=False, patch_artist=True)
                for patch in box["boxes"]:
                    patch.set(facecolor="none", edgecolor=COLORS[model], linewidth=2.0 if kept else 0.8,
                              hatch="" if j == 0 else "///")
                for part in ("whiskers", "caps", "medians"):
                    for line in box[part]:
                        line.set(color=COLORS[model], linewidth=1.2 if kept else 0.8)
                ax.scatter(x + rng.normal(scale=width / 8, size=len(values)), values, s=3, color=COLORS[model], alpha=0.4)
        ax.set_xticks(range(len(PAPER_MODELS)), PAPER_MODELS, rotation=45, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(PAPER_MODELS) - 0.4)
        finish_axes(ax, title=f"Scenario {ev} ({SCENARIOS[ev].name})", xlabel="model", ylabel=ACCURACY if ev == 1 else "")
        if ax.get_legend():
            ax.get_legend().remove()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="none", edgecolor="black", hatch="" if j == 0 else "///", label=f"lr {lr:g}")
               for j, lr in enumerate(lrs)]
    if lrs:
        handles.append(Patch(facecolor="none", edgecolor="black", linewidth=2.0, label="kept lr (thick)"))
    if published:
        handles.append(Line2D([], [], linestyle="", label="published mean (original's lr)", **_legend(PUBLISHED_MARK)))
    handles.append(Line2D([], [], linestyle="", label="no runs", **_legend(NO_RUNS_MARK)))
    fig.suptitle(title or "Test accuracy per learning rate (Fig. 4)", fontsize=10)
    fig.tight_layout()
    # below the model names and axis labels (save_figure's tight box takes it in)
    fig.legend(handles=handles, fontsize=7, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 0.0), frameon=False)
    return [out / "hyperparams.csv", *save_figure(fig, out, "hyperparams")]


# Fig. 5 ---------------------------------------------------------------------------------------------------

def read_generalization(tracking_uri: str, record: Record) -> Optional[Dict[int, float]]:
    """The run's ``generalization.csv`` artifact as {scale: accuracy fraction}; None if it has none."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(record["run_id"], "generalization.csv", tmp)
        except Exception:  # MLflow raises different errors per store for a missing artifact
            return None
        rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    if not rows:
        return None
    return {s: float(rows[0][f"s{s}"]) for s in ALL_SCALES if rows[0].get(f"s{s}") not in (None, "")}


def generalization_figure(selected: Sequence[Record], tracking_uri: str, out: Path, *, data: str = "",
                          title: str = "") -> List[Path]:
    """Test accuracy per object scale, mean over the kept runs per model and scenario."""
    curves: Dict[tuple, List[Dict[int, float]]] = defaultdict(list)
    for record in selected:
        per_scale = read_generalization(tracking_uri, record)
        if per_scale is not None:
            curves[(record["params.model"], config_key(record)[2])].append(per_scale)
    header = ["model", "data", "eval", "n"] + [f"s{s}" for s in ALL_SCALES]
    means: Dict[tuple, List[Optional[float]]] = {}
    with open(out / "generalization.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for model in _models(selected):
            for ev in EVALUATIONS:
                runs = curves.get((model, ev))
                if not runs:
                    continue
                row = []
                for s in ALL_SCALES:
                    values = [100.0 * r[s] for r in runs if s in r]
                    row.append(statistics.fmean(values) if values else None)
                means[(model, ev)] = row
                writer.writerow([model, data, ev, len(runs), *[_fmt(v) for v in row]])

    fig, axes = plt.subplots(1, len(GENERALIZATION_PANELS), figsize=(10, 3.2), sharey=True)
    for ax, ev in zip(axes, GENERALIZATION_PANELS):
        train = SCENARIOS[ev].train_scales
        ax.axvspan(min(train), max(train), color="0.92", zorder=0)
        for model in PAPER_MODELS:
            row = means.get((model, ev))
            if row is None:
                no_runs_entry(ax, model)
                continue
            y = np.array([np.nan if v is None else v for v in row])
            n = len(curves[(model, ev)])
            ax.plot(ALL_SCALES, y, ":", marker=".", markersize=3, linewidth=1, color=COLORS[model], label=f"{model} (n={n})")
        finish_axes(ax, title=f"Scenario {ev} ({SCENARIOS[ev].name})", xlabel="object scale (px)",
                    ylabel=ACCURACY if ev == GENERALIZATION_PANELS[0] else "")
        if not any((model, ev) in means for model in PAPER_MODELS):  # the band and no-run entries alone
            ax.text(0.5, 0.5, "no runs with generalization.csv yet", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
    fig.suptitle((title or "Generalization to unseen scales (Fig. 5)") + "; grey: training scales", fontsize=10)
    fig.tight_layout()
    for ax in axes:
        legend_below(ax)  # the curves span the whole panel: the legends go under it
    return [out / "generalization.csv", *save_figure(fig, out, "generalization")]


# Table 2 --------------------------------------------------------------------------------------------------

def time_table(selected: Sequence[Record], out: Path, *, data: str = "", title: str = "",
               published: Optional[Mapping[tuple, Published]] = None) -> List[Path]:
    """Mean training time per epoch in scenario 2 per model, as the original's ``plots/time.py``.

    ``train_time`` is the record's latest value (the last epoch's time, what the
    original's export holds); ``avg_time`` is each run's mean over all its epochs.
    ``published`` ((data, model, evaluation) -> the original's result) adds its ``train_time`` mean
    (the original's hardware, so a reference, not a target).
    """
    published = published or {}
    by_model: Dict[str, List[Record]] = defaultdict(list)
    for record in selected:
        if config_key(record)[2] == TIME_EVALUATION:
            by_model[record["params.model"]].append(record)
    lines = [f"# {title or 'Training time per epoch (Table 2)'}", "",
             f"Scenario {TIME_EVALUATION} runs at the kept lr, mean over runs; `train_time`: the last epoch's "
             "seconds (the original's Table 2), `avg_time`: each run's mean over its epochs.", "",
             f"| model | {data} train_time (s) | avg_time (s) | n | published train_time (s) |", "|---|---|---|---|---|"]
    with open(out / "time.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "data", "train_time_mean", "avg_time_mean", "n", "published_train_time_mean"])
        theirs = {model: row.train_time_mean for (d, model, ev), row in published.items()
                  if d == data and ev == TIME_EVALUATION}
        for model in _models([r for rs in by_model.values() for r in rs]) + [m for m in MODELS if m in theirs and m not in by_model]:
            runs = by_model.get(model, [])
            train = [v for r in runs for v in [_value(r, "train_time")] if v is not None]
            avg = [v for r in runs for v in [_value(r, "avg_time")] if v is not None]
            train_mean = statistics.fmean(train) if train else None
            avg_mean = statistics.fmean(avg) if avg else None
            writer.writerow([model, data, _fmt(train_mean), _fmt(avg_mean), len(runs), _fmt(theirs.get(model))])
            lines.append(f"| {model} | {_fmt(train_mean, 2) or '—'} | {_fmt(avg_mean, 2) or '—'} | {len(runs)} | "
                         f"{_fmt(theirs.get(model), 3) or '—'} |")
    if not by_model and not theirs:
        lines.append(f"| (no scenario-{TIME_EVALUATION} runs yet) | — | — | 0 | — |")
    (out / "time.md").write_text("\n".join(lines) + "\n")
    return [out / "time.md", out / "time.csv"]


def seeds_present(records: Sequence[Record]) -> Dict[tuple, Dict[int, Record]]:
    """(model, evaluation) -> {seed: record}."""
    out: Dict[tuple, Dict[int, Record]] = defaultdict(dict)
    for record in records:
        out[(record["params.model"], config_key(record)[2])].setdefault(seed_of(record), record)
    return out
