"""Report figures with matplotlib: the metric against epoch per row, and the headline."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from raysys.track import runs  # noqa: E402


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


def curves(report, out: Path) -> List[Path]:
    """Mean over seeds of the curve metric per epoch, with a ±std band, one line per row."""
    metric = report.definition.curve_metric
    scale = report.definition.scale
    client = runs.client(report.tracking_uri)
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in report.rows:
        series: Dict[int, List[float]] = {}
        for seed_run in row.runs:
            if not seed_run.run_id:
                continue
            for m in client.get_metric_history(seed_run.run_id, metric):
                series.setdefault(m.step, []).append(m.value * scale)
        if not series:
            continue
        steps = sorted(series)
        mean = np.array([np.mean(series[s]) for s in steps])
        std = np.array([np.std(series[s]) for s in steps])
        ax.plot(steps, mean, marker="o", label=f"{row.label} (n={len(row.values)})")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    finish_axes(ax, title=report.definition.title, xlabel="epoch", ylabel=f"{metric} ×{scale:g}")
    return save_figure(fig, out, "curves")


def headline(report, out: Path) -> List[Path]:
    """Ours (mean ± std) per row as bars, the published number as a marker."""
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(report.rows)), 4))
    x = np.arange(len(report.rows))
    means = [row.mean if row.mean is not None else np.nan for row in report.rows]
    stds = [row.std or 0.0 for row in report.rows]
    ax.bar(x, means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8, label="ours")
    published = [(i, row.published) for i, row in enumerate(report.rows) if row.published is not None]
    if published:
        ax.scatter([i for i, _ in published], [v for _, v in published], color="tab:red", marker="D", zorder=3, label="published")
    ax.set_xticks(x, [row.label for row in report.rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{report.definition.metric} ×{report.definition.scale:g}")
    finite = [v for v in means if not np.isnan(v)] + [v for _, v in published]
    if finite:
        low, high = min(finite), max(finite)
        ax.set_ylim(max(0.0, low - (high - low) * 0.5 - 2), high + (high - low) * 0.2 + 2)
    ax.set_title(report.definition.title, fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, out, "headline")


def draw_all(report, out: Path) -> List[Path]:
    extra = [path for figure in report.definition.figures for path in figure(report, out)]
    return [*curves(report, out), *headline(report, out), *extra]
