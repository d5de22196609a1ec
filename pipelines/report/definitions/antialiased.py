"""Reports of Antialiased CNNs: the filter-size study per architecture (seed 003).

One report per architecture (tune space ``antialiased-filters-<arch>.yaml``):
rows Baseline, Rect-2, Tri-3, Tri-4, Bin-5 (BlurPool filter sizes 2-5; the
labels are the README's), ImageNet top-1 (``eval_top1``) with shift
consistency (``eval_consistency``) as a further column, both in percent and
measured on the trained model by ``evaluate.after_training``. The published
numbers are the README's tables (models trained from scratch). The figure
plots consistency against accuracy, ours and published, and draws each
set's Pareto front: the variants no other variant beats in both.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from pipelines.report.engine import Column, ReportDefinition, register_report

SOURCE = "adobe/antialiased-cnns README, ImageNet results per filter size (trained from scratch)"
ROWS = ("Baseline", "Rect-2", "Tri-3", "Tri-4", "Bin-5")
# arch -> (title, {row: (top-1, consistency)}), as published.
PUBLISHED: Dict[str, Tuple[str, Dict[str, Tuple[float, float]]]] = {
    "alexnet": ("AlexNet", {"Baseline": (56.55, 78.18), "Rect-2": (57.24, 81.33), "Tri-3": (56.90, 82.15), "Tri-4": (56.72, 82.54), "Bin-5": (56.58, 82.51)}),
    "vgg16": ("VGG16", {"Baseline": (71.59, 88.52), "Rect-2": (72.15, 89.24), "Tri-3": (72.20, 89.60), "Tri-4": (72.43, 89.92), "Bin-5": (72.33, 90.19)}),
    "vgg16_bn": ("VGG16bn", {"Baseline": (73.36, 89.24), "Rect-2": (74.01, 90.72), "Tri-3": (73.91, 91.10), "Tri-4": (74.12, 91.22), "Bin-5": (74.05, 91.35)}),
    "resnet18": ("ResNet18", {"Baseline": (69.74, 85.11), "Rect-2": (71.39, 86.90), "Tri-3": (71.69, 87.51), "Tri-4": (71.48, 88.07), "Bin-5": (71.38, 88.25)}),
    "resnet34": ("ResNet34", {"Baseline": (73.30, 87.56), "Rect-2": (74.46, 89.14), "Tri-3": (74.33, 89.32), "Tri-4": (74.38, 89.53), "Bin-5": (74.20, 89.49)}),
    "resnet50": ("ResNet50", {"Baseline": (76.16, 89.20), "Rect-2": (76.81, 89.96), "Tri-3": (76.83, 90.91), "Tri-4": (77.23, 91.29), "Bin-5": (77.04, 91.31)}),
    "resnet101": ("ResNet101", {"Baseline": (77.37, 89.81), "Rect-2": (77.82, 91.04), "Tri-3": (78.13, 91.62), "Tri-4": (78.22, 91.85), "Bin-5": (77.92, 91.74)}),
    "densenet121": ("DenseNet121", {"Baseline": (74.43, 88.81), "Rect-2": (75.04, 89.53), "Tri-3": (75.14, 89.78), "Tri-4": (75.29, 90.29), "Bin-5": (75.03, 90.39)}),
    "mobilenet_v2": ("MobileNet-v2", {"Baseline": (71.88, 86.50), "Rect-2": (72.63, 87.33), "Tri-3": (72.59, 87.46), "Tri-4": (72.72, 87.72), "Bin-5": (72.50, 87.79)}),
}
ACCURACY, CONSISTENCY = "eval_top1", "eval_consistency"

Point = Tuple[str, float, float]  # (label, accuracy, consistency)


def pareto_front(points: Sequence[Point]) -> List[str]:
    """Labels of the points that no other point beats strictly in both accuracy and consistency."""
    return [
        label for label, acc, cons in points
        if not any(a > acc and c > cons for other, a, c in points if other != label)
    ]


def _ours(report) -> List[Point]:
    points = []
    for row in report.rows:
        acc = row.mean
        cons = row.column_values(CONSISTENCY)
        if acc is not None and cons:
            points.append((row.label, acc, sum(cons) / len(cons)))
    return points


def _published(report) -> List[Point]:
    points = []
    for row in report.rows:
        acc = row.published
        cons = next((c.published.get(row.label) for c in report.definition.columns if c.metric == CONSISTENCY), None)
        if acc is not None and cons is not None:
            points.append((row.label, acc, cons))
    return points


def _draw(ax, points: List[Point], front: List[str], color: str, name: str, filled: bool) -> None:
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    ax.scatter(xs, ys, color=color if filled else "none", edgecolors=color, label=name, zorder=3)
    for label, x, y in points:
        weight = "bold" if label in front else "normal"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color=color, fontweight=weight)
    on_front = sorted((p for p in points if p[0] in front), key=lambda p: p[1])
    if len(on_front) > 1:
        ax.plot([p[1] for p in on_front], [p[2] for p in on_front], color=color, linestyle="--", linewidth=1, label=f"{name} Pareto front")


def accuracy_consistency(report, out: Path) -> List[Path]:
    """Consistency against top-1 (ours filled, published hollow) with Pareto fronts; also as CSV."""
    from pipelines.report.figures import finish_axes, no_runs_entry, plt, save_figure

    out.mkdir(parents=True, exist_ok=True)
    ours, published = _ours(report), _published(report)
    ours_front, published_front = pareto_front(ours), pareto_front(published)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if published:
        _draw(ax, published, published_front, "tab:gray", "published", filled=False)
    if ours:
        _draw(ax, ours, ours_front, "tab:blue", "ours", filled=True)
    else:
        ax.text(0.5, 0.1, "no runs with eval_top1 and eval_consistency yet", ha="center", transform=ax.transAxes, fontsize=8)
    drawn = {label for label, _, _ in ours}
    for row in report.rows:
        if ours and row.label not in drawn:
            no_runs_entry(ax, row.label)
    ax.margins(x=0.12, y=0.08)  # room for the labels beside the outermost points
    finish_axes(ax, title=report.definition.title, xlabel="ImageNet top-1 accuracy (%)", ylabel="shift consistency (%)")
    by_label: Dict[str, Dict[str, Optional[float]]] = {}
    for name, points, front in (("ours", ours, ours_front), ("published", published, published_front)):
        for label, acc, cons in points:
            entry = by_label.setdefault(label, {})
            entry.update({f"{name}_top1": acc, f"{name}_consistency": cons, f"{name}_pareto": float(label in front)})
    keys = ["ours_top1", "ours_consistency", "ours_pareto", "published_top1", "published_consistency", "published_pareto"]
    lines = ["row," + ",".join(keys)]
    for row in report.rows:
        entry = by_label.get(row.label, {})
        lines.append(row.label + "," + ",".join("" if entry.get(k) is None else f"{entry[k]:.4g}" for k in keys))
    (out / "accuracy_consistency.csv").write_text("\n".join(lines) + "\n")
    return [*save_figure(fig, out, "accuracy_consistency"), out / "accuracy_consistency.csv"]


for _arch, (_title, _numbers) in PUBLISHED.items():
    register_report(ReportDefinition(
        name=f"antialiased-filters-{_arch}",
        title=f"Antialiased CNNs, {_title} on ImageNet: top-1 % by BlurPool filter",
        space=f"antialiased-filters-{_arch}.yaml",
        metric=ACCURACY,
        scale=1.0,  # eval_top1 and eval_consistency are percentages already
        published={row: acc for row, (acc, _) in _numbers.items()},
        published_source=SOURCE,
        curve_metric="test_acc",
        columns=(Column("shift consistency %", CONSISTENCY, {row: cons for row, (_, cons) in _numbers.items()}),),
        figures=(accuracy_consistency,),
    ))
