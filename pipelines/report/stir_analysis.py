"""STIR figures from the runs' analysis artifacts: Fig. 6 (equivariance) and Fig. 7 (scale indices).

Both take *records* (rows of the STIR export: ``run_id``, ``params.<name>``,
``metrics.<name>``, ...; already lr-selected), read each run's artifact from
MLflow (``errors.npz`` / ``indices.npz``, written by
raysys/families/stir/analysis.py at the end of training), draw one panel per
(dataset, scenario) and write a CSV of exactly what they plotted. Runs without
the artifact are skipped; with none, the figure carries a short note.

- :func:`equivariance_figure` (``plots/equivariance.py``): per run, the mean
  stage-2 equivariance error over the scenario's scale pairs against the test
  accuracy, one colour per model.
- :func:`indices_figure` (``plots/indices.py``, the summary plot): for the
  best-test-accuracy run of each slice/energy-pool model, the kernel size
  (k + 2·index) the second scale pool chose per output channel against the
  object scale, for one test object; channels sorted by their correlation.
"""
from __future__ import annotations

import csv
import math
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from matplotlib.colors import BoundaryNorm

from pipelines.report.figures import finish_axes, legend_below, log_x, plt, save_figure
from pipelines.report.stir_published import Published
from raysys.families.stir.analysis import ERRORS_ARTIFACT, INDICES_ARTIFACT
from raysys.families.stir.layers.equivariance import PAIRS
from raysys.families.stir.scenarios import SCENARIOS
from raysys.track import runs

EQUIVARIANCE_MODELS = ("standard", "kanazawa", "pixel_pool", "slice_pool", "energy_pool")  # legend order
SUMMARY_INDEX_MODELS = ("slice_pool", "energy_pool")  # one scale index per channel
MODEL_STYLE = {"standard": ("#7BB725", "^"), "kanazawa": ("#18B4F1", "D"), "pixel_pool": ("#C50F3C", "s"),
               "slice_pool": ("#FDB735", "o"), "energy_pool": ("#6B4C9A", "v")}
# plots/equivariance.py: the pairs averaged per scenario. For scenarios 1 and 3 it keeps a pair inside the
# training scales and drops a test pair (apparently swapped); "test" keeps the pairs whose two scales are both
# test scales, which equals the original for scenarios 2 (the paper's Fig. 6) and 4.
ORIGINAL_PAIRS = {1: (2, 3, 4, 5), 2: (0, 1, 4, 5), 3: (0, 1, 2, 3), 4: (0, 1, 2, 3, 4, 5)}
PAIR_SELECTIONS = ("test", "original")
ACCURACY = "test accuracy (%)"
EXAMPLE_OBJECT = 33  # plots/indices.py: emoji class 33 (the first class if a dataset has fewer)


def selected_pairs(evaluation: int, selection: str = "test") -> Tuple[int, ...]:
    """Columns of ``errors.npz`` averaged for a run of scenario ``evaluation`` (0 = all six)."""
    if selection not in PAIR_SELECTIONS:
        raise ValueError(f"pair selection {selection!r} is not one of {list(PAIR_SELECTIONS)}")
    scenario = SCENARIOS.get(evaluation)
    if scenario is None:
        return tuple(range(len(PAIRS)))
    if selection == "original":
        return ORIGINAL_PAIRS[evaluation]
    test = set(scenario.test_scales)
    return tuple(j for j, (a, b) in enumerate(PAIRS) if a in test and b in test)


def _text(record: Mapping, key: str) -> str:
    value = record.get(key)
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _number(record: Mapping, key: str) -> float:
    try:
        return float(record.get(key))
    except (TypeError, ValueError):
        return float("nan")


def _evaluation(record: Mapping) -> int:
    try:
        return int(float(_text(record, "params.evaluation") or 0))
    except ValueError:
        return 0


def load_artifact(client, run_id: str, name: str) -> Optional[Dict[str, np.ndarray]]:
    """The arrays of a run's npz artifact ``name``, or None if the run has none."""
    if not run_id:
        return None
    with tempfile.TemporaryDirectory() as directory:
        try:
            local = client.download_artifacts(run_id, name, directory)
        except Exception:  # missing artifact or run: MlflowException / OSError, depending on the store
            return None
        with np.load(local, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _panel_title(data: str, evaluation: int) -> str:
    scenario = SCENARIOS.get(evaluation)
    return f"{data} · {scenario.name if scenario else 'all scales'}"


def _grid(panels: List[Tuple[str, int]], width: float = 3.6, height: float = 2.8):
    """A figure with one axis per (data, evaluation) panel: rows = datasets, columns = scenarios."""
    datasets = list(dict.fromkeys(d for d, _ in panels)) or [""]
    scenarios = sorted({e for _, e in panels}) or [0]
    fig, axes = plt.subplots(len(datasets), len(scenarios), squeeze=False,
                             figsize=(width * len(scenarios), height * len(datasets)))
    where = {(d, e): axes[datasets.index(d)][scenarios.index(e)] for d, e in panels}
    for d in datasets:
        for e in scenarios:
            if (d, e) not in where:
                axes[datasets.index(d)][scenarios.index(e)].axis("off")
    return fig, axes, where


EQUIVARIANCE_COLUMNS = ("run_id", "model", "data", "evaluation", "seed", "lr", "test_acc",
                        "stage1_error", "stage2_error", "pairs")


def equivariance_rows(records: Sequence[Mapping], tracking_uri: str, selection: str = "test") -> List[dict]:
    """One row per record of an equivariance model with ``errors.npz``: mean errors over the selected pairs."""
    client = runs.client(tracking_uri)
    rows = []
    for record in records:
        model = _text(record, "params.model")
        if model not in EQUIVARIANCE_MODELS:
            continue
        errors = load_artifact(client, _text(record, "run_id"), ERRORS_ARTIFACT)
        if errors is None:
            continue
        evaluation = _evaluation(record)
        pairs = list(selected_pairs(evaluation, selection))
        rows.append({
            "run_id": _text(record, "run_id"), "model": model, "data": _text(record, "params.data"),
            "evaluation": evaluation, "seed": _text(record, "params.seed"), "lr": _text(record, "params.lr"),
            "test_acc": _number(record, "metrics.test_acc"),
            "stage1_error": float(np.mean(errors["stage1"][:, :, pairs])),
            "stage2_error": float(np.mean(errors["stage2"][:, :, pairs])),
            "pairs": " ".join(f"{PAIRS[j][0]}<-{PAIRS[j][1]}" for j in pairs),
        })
    return rows


def equivariance_figure(records: Sequence[Mapping], tracking_uri: str, out: Path, *, selection: str = "test",
                        published: Optional[Mapping[tuple, Published]] = None) -> List[Path]:
    """Fig. 6: stage-2 equivariance error against test accuracy, per (dataset, scenario); plus its CSV.

    ``published`` ((data, model, evaluation) -> the original's result) draws its mean test accuracy
    as a dashed line in the model's colour; a model without runs in a panel is "x <model>: no runs"."""
    out = Path(out)
    published = published or {}
    rows = equivariance_rows(records, tracking_uri, selection)
    panels = sorted({(r["data"], r["evaluation"]) for r in rows})
    fig, axes, where = _grid(panels)
    for (data, evaluation), ax in where.items():
        drawn = [r for r in rows if (r["data"], r["evaluation"]) == (data, evaluation)]
        for model in EQUIVARIANCE_MODELS:
            color, marker = MODEL_STYLE[model]
            points = [(r["stage2_error"], r["test_acc"]) for r in drawn if r["model"] == model
                      and np.isfinite(r["stage2_error"]) and np.isfinite(r["test_acc"])]
            if points:
                x, y = zip(*points)
                ax.scatter(x, y, s=8, c=color, marker=marker, label=f"{model} (n={len(points)})", zorder=3)
            else:
                ax.plot([], [], "x", color="tab:gray", label=f"{model}: no runs")
            theirs = published.get((data, model, evaluation))
            if theirs is not None:
                ax.axhline(theirs.test_acc_mean, color=color, linestyle="--", linewidth=0.8, zorder=2)
        if any((data, m, evaluation) in published for m in EQUIVARIANCE_MODELS):
            ax.plot([], [], "--", color="black", linewidth=0.8, label="published mean (original)")
        if ax.collections and all(r["stage2_error"] > 0 for r in drawn if np.isfinite(r["stage2_error"])):
            log_x(ax, [r["stage2_error"] for r in drawn if np.isfinite(r["stage2_error"])])
        first_column = evaluation == min(e for d, e in where if d == data)
        finish_axes(ax, title=_panel_title(data, evaluation), xlabel="equivariance error, stage 2 (relative)",
                    ylabel=ACCURACY if first_column else "")
    if not panels:
        finish_axes(axes[0][0], title="STIR equivariance (Fig. 6)", xlabel="equivariance error, stage 2 (relative)",
                    ylabel=ACCURACY, empty_note=f"no runs with {ERRORS_ARTIFACT} yet")
    fig.tight_layout()
    for ax in where.values():
        legend_below(ax)  # the points fill the panel: the legend goes under it
    csv_path = _write_csv(out / "stir_equivariance.csv", EQUIVARIANCE_COLUMNS,
                          ([r[c] for c in EQUIVARIANCE_COLUMNS] for r in rows))
    return [*save_figure(fig, out, "stir_equivariance"), csv_path]


INDEX_COLUMNS = ("run_id", "model", "data", "evaluation", "class", "instance", "channel", "rank", "r",
                 "scale", "kernel_size")


def _best_with_indices(client, records: Sequence[Mapping]) -> Optional[Tuple[Mapping, Dict[str, np.ndarray]]]:
    """The highest-test-accuracy record that has ``indices.npz`` (plots/indices.py picks by test_acc)."""
    ranked = sorted(records, key=lambda r: -np.nan_to_num(_number(r, "metrics.test_acc"), nan=-np.inf))
    for record in ranked:
        arrays = load_artifact(client, _text(record, "run_id"), INDICES_ARTIFACT)
        if arrays is not None and arrays["pool2"].ndim == 4:
            return record, arrays
    return None


def channel_order(scales: np.ndarray, kernel_sizes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(order, r): channels sorted by the correlation r of kernel size with object scale (constant -> r = 0)."""
    r = np.zeros(kernel_sizes.shape[1])
    for channel in range(kernel_sizes.shape[1]):
        values = kernel_sizes[:, channel].astype(float)
        if values.std() > 0:
            r[channel] = float(np.corrcoef(scales, values)[0, 1])
    return np.argsort(r, kind="stable"), r


def indices_figure(records: Sequence[Mapping], tracking_uri: str, out: Path, *,
                   example: int = EXAMPLE_OBJECT) -> List[Path]:
    """Fig. 7: chosen kernel size per output channel against object scale (best run per model/data/scenario)."""
    out = Path(out)
    client = runs.client(tracking_uri)
    groups: Dict[Tuple[str, int, str], List[Mapping]] = defaultdict(list)
    for record in records:
        model = _text(record, "params.model")
        if model in SUMMARY_INDEX_MODELS:
            groups[(_text(record, "params.data"), _evaluation(record), model)].append(record)
    chosen = []
    for key in sorted(groups):
        best = _best_with_indices(client, groups[key])
        if best is not None:
            chosen.append((key, *best))
    # Every (data, scenario) that has one of the models gets a panel per model: a missing one says so.
    drawn = {key for key, _, _ in chosen}
    missing = sorted({(data, evaluation, model) for data, evaluation, _ in drawn for model in SUMMARY_INDEX_MODELS} - drawn)
    panels = [(f"{data} · {model}", evaluation) for (data, evaluation, model), _, _ in chosen]
    fig, axes, where = _grid(sorted(panels + [(f"{d} · {m}", e) for d, e, m in missing]), width=4.2, height=3.2)
    for data, evaluation, model in missing:
        ax = where[(f"{data} · {model}", evaluation)]
        ax.set(xticks=[], yticks=[])
        finish_axes(ax, title=f"{_panel_title(data, evaluation)} · {model}", xlabel="object scale (px)",
                    ylabel="output channel (sorted by r)", empty_note=f"no runs with {INDICES_ARTIFACT}")
    rows = []
    for ((data, evaluation, model), record, arrays), panel in zip(chosen, panels):
        ax = where[panel]
        pool2, scales = arrays["pool2"], np.asarray(arrays["scales"])
        k = int(arrays.get("kernel_size", 7))
        cls = example if example < pool2.shape[1] else 0
        kernel_sizes = k + 2 * pool2[:, cls, 0, :].astype(int)  # (48 scales, C)
        order, r = channel_order(scales, kernel_sizes)
        low, high = k, max(k + 2, int(kernel_sizes.max()))
        norm = BoundaryNorm(np.arange(low - 1, high + 2, 2), plt.get_cmap("viridis").N)  # a colour per size k + 2i
        for rank, channel in enumerate(order):
            points = ax.scatter(scales, np.full(len(scales), rank), c=kernel_sizes[:, channel], cmap="viridis",
                                norm=norm, s=3, zorder=3)
            rows.extend((_text(record, "run_id"), model, data, evaluation, cls, 0, int(channel), rank,
                         f"{r[channel]:.4f}", int(s), int(size)) for s, size in zip(scales, kernel_sizes[:, channel]))
        bar = fig.colorbar(points, ax=ax, label="chosen kernel size (px)")
        bar.set_ticks(range(low, high + 1, 2))  # k + 2i: odd sizes only
        ax.set_yticks([])
        title = f"{_panel_title(data, evaluation)} · {model} (test {_number(record, 'metrics.test_acc'):.1f}%)"
        finish_axes(ax, title=title, xlabel="object scale (px)", ylabel="output channel (sorted by r)")
    if not chosen:
        finish_axes(axes[0][0], title="STIR scale indices (Fig. 7)", xlabel="object scale (px)",
                    ylabel="output channel", empty_note=f"no slice/energy-pool runs with {INDICES_ARTIFACT} yet")
    fig.tight_layout()
    csv_path = _write_csv(out / "stir_indices.csv", INDEX_COLUMNS, rows)
    return [*save_figure(fig, out, "stir_indices"), csv_path]
