"""Report figures with matplotlib: the metric against epoch per row, and the headline (ours beside published).

Every figure: labelled axes with units, whole-number epoch ticks, y limits that hold the error bars, rows
without runs drawn as such (a hatched "no runs" bar, an x in the legend)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from raysys.track import metric_names, runs  # noqa: E402


def save_figure(fig, out: Path, stem: str) -> List[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` and close the figure."""
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    plt.close(fig)
    return paths



def finish_axes(ax, *, title: str, xlabel: str, ylabel: str, empty_note: str = "") -> None:
    """Title, labels and grid; a legend when something was drawn, else ``empty_note`` in the middle."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    drawn = ax.lines or ax.collections or ax.patches
    if drawn and ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7)
    elif not drawn and empty_note:
        ax.text(0.5, 0.5, empty_note, ha="center", va="center", transform=ax.transAxes, fontsize=8)


PERCENT_WORDS = ("acc", "top1", "top5", "consistency")
LABELS = {  # a recorded metric name -> the axis label (without unit)
    "test/acc": "test accuracy", "test/final_acc": "fine-tuned test accuracy", "val/acc": "validation accuracy",
    "eval/top1": "top-1 accuracy", "eval/consistency": "shift consistency",
}
MISSING = dict(fill=False, hatch="///", edgecolor="tab:gray", linewidth=0.8)  # a row without runs


def metric_label(metric: str, scale: float) -> str:
    """``test accuracy (%)`` for ``test_acc`` ×100; the recorded name and its unit otherwise."""
    name = metric_names.grouped(metric)
    percent = scale == 100 or any(word in name for word in PERCENT_WORDS)
    return LABELS.get(name, name) + (" (%)" if percent else "")


def legend_below(ax, ncol: int = 2) -> None:
    """The axes' legend under its x label, never over the data (save_figure's tight box takes it in).

    Call it after ``fig.tight_layout()``, which would otherwise shrink the axes to make room."""
    if ax.get_legend_handles_labels()[1]:
        below_label = -(ax.xaxis.label.get_size() * 3.2) / (ax.bbox.height / ax.figure.dpi * 72)  # 3.2 lines of text
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, below_label), ncol=ncol, frameon=False)


def no_runs_entry(ax, label: str, what: str = "no runs") -> None:
    """A legend entry "x <label>: no runs" for a row the figure has nothing to draw of."""
    ax.plot([], [], "x", color="tab:gray", label=f"{label}: {what}")


# (up to this many decades of values, the labels per decade) for log_x
LOG_SUBS = ((1.0, (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)), (2.0, (1.0, 2.0, 5.0)), (math.inf, (1.0,)))


def log_x(ax, values: Sequence[float]) -> None:
    """A log x axis labelled in plain numbers (0.1, 0.2, 0.5, 1, ...): the narrower the range of ``values``,
    the more labels per decade (:data:`LOG_SUBS`)."""
    ax.set_xscale("log")
    positive = [v for v in values if v > 0]
    decades = math.log10(max(positive) / min(positive)) if positive else 0.0
    subs = next(subs for widest, subs in LOG_SUBS if decades < widest)
    ax.xaxis.set_major_locator(LogLocator(subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def integer_epochs(ax) -> None:
    """Epochs are whole numbers: ticks only there."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _std(values: List[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0  # as the tables (statistics.stdev)


def curves(report, out: Path) -> List[Path]:
    """Mean over seeds of the curve metric per epoch, with a ±std band, one line per row; published as dashes."""
    metric = report.definition.curve_metric
    scale = report.definition.scale
    client = runs.client(report.tracking_uri)
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in report.rows:
        series: Dict[int, List[float]] = {}
        for seed_run in row.runs:
            if not seed_run.run_id:
                continue
            for m in runs.metric_history(client, seed_run.run_id, metric):
                series.setdefault(m.step, []).append(m.value * scale)
        if not series:
            no_runs_entry(ax, row.label)
            continue
        steps = sorted(series)
        mean = np.array([np.mean(series[s]) for s in steps])
        std = np.array([_std(series[s]) for s in steps])
        (line,) = ax.plot(steps, mean, marker="o", label=f"{row.label} (n={len(row.values)})")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2, color=line.get_color())
        if row.published is not None and metric == report.definition.metric:
            ax.axhline(row.published, color=line.get_color(), linestyle="--", linewidth=1, label=f"{row.label} published")
    integer_epochs(ax)
    finish_axes(ax, title=report.definition.title, xlabel="epoch", ylabel=metric_label(metric, scale),
                empty_note="no runs yet")
    return save_figure(fig, out, "curves")


def value_limits(values: List[float], percent: bool) -> Tuple[float, float]:
    """y limits holding every value (means ± std, published) with a margin; 0-100 when there is none."""
    if not values:
        return (0.0, 100.0) if percent else (0.0, 1.0)
    low, high = min(values), max(values)
    pad = max((high - low) * 0.15, 1.0 if percent else 0.01)
    low, high = low - pad, high + pad
    return (max(low, 0.0) if min(values) >= 0 else low), (min(high, 100.0) if percent and max(values) <= 100 else high)


def headline(report, out: Path) -> List[Path]:
    """Ours (mean ± std over seeds) per row as bars, the published number as a bar beside it; a row
    without runs as a hatched empty bar ("no runs")."""
    d = report.definition
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(report.rows)), 4))
    x = np.arange(len(report.rows))
    width = 0.38
    ours = [(i, row.mean, row.std or 0.0) for i, row in enumerate(report.rows) if row.mean is not None]
    published = [(i, row.published) for i, row in enumerate(report.rows) if row.published is not None]
    missing = [i for i, row in enumerate(report.rows) if row.mean is None]
    label = metric_label(d.metric, d.scale)
    low, high = value_limits([m - s for _, m, s in ours] + [m + s for _, m, s in ours] + [v for _, v in published],
                             label.endswith("(%)"))
    shift = width / 2 if published else 0.0
    if ours:
        ax.bar([i - shift for i, _, _ in ours], [m - low for _, m, _ in ours], width, bottom=low,
               yerr=[s for _, _, s in ours], capsize=4, color="tab:blue", label="ours (mean ± std over seeds)")
    if published:
        ax.bar([i + shift for i, _ in published], [v - low for _, v in published], width, bottom=low,
               color="tab:gray", alpha=0.7, label="published")
    if missing:
        ax.bar([i - shift for i in missing], [high - low] * len(missing), width, bottom=low, label="no runs", **MISSING)
        for i in missing:
            ax.text(i - shift, (low + high) / 2, "no runs", rotation=90, ha="center", va="center", fontsize=8, color="tab:gray",
                    bbox=dict(facecolor="white", edgecolor="none"))
    ax.set_ylim(low, high)
    ax.set_xticks(x, [row.label for row in report.rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(label)
    ax.set_title(d.title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    return save_figure(fig, out, "headline")


def draw_all(report, out: Path) -> List[Path]:
    extra = [path for figure in report.definition.figures for path in figure(report, out)]
    return [*curves(report, out), *headline(report, out), *extra]
