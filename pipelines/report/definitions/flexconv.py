"""Reports of FlexConv (Romero, Bruintjes et al., ICLR 2022): Tables 3, 4, 6-9 and learned kernel sizes.

Published numbers are the mean over seeds in the authors' experimental-results sheet
(/work/shared/reference/originals.md, "Accuracy anchors"); rows the sheet does not give are
left without one, never filled in.
"""
from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path
from typing import Dict, List

from pipelines.report.engine import Column, ReportDefinition, register_report

SOURCE = "FlexConv experiments/experimental-results-all.xlsx (rjbruin/flexconv), mean over 3 seeds"
KERNEL_SIZE = re.compile(r"^kernel_size_l(\d+)$")


def kernel_size_table(report) -> Dict[str, Dict[int, List[float]]]:
    """Row label -> layer index -> the final ``kernel_size_l{i:02d}`` of each finished run."""
    from raysys.track import runs

    client = runs.client(report.tracking_uri)
    table: Dict[str, Dict[int, List[float]]] = {}
    for row in report.rows:
        for seed_run in row.runs:
            if not seed_run.run_id:
                continue
            for name, value in client.get_run(seed_run.run_id).data.metrics.items():
                match = KERNEL_SIZE.match(name.rpartition("/")[2])  # layers/kernel_size_l03 or, older, kernel_size_l03
                if match:
                    table.setdefault(row.label, {}).setdefault(int(match.group(1)), []).append(value)
    return table


def kernel_sizes(report, out: Path) -> List[Path]:
    """Learned kernel size per layer (mean ± std over seeds) at the end of training, one line per row; a row
    without runs as "x <row>: no runs"."""
    from matplotlib.ticker import MaxNLocator

    from pipelines.report.figures import finish_axes, no_runs_entry, plt, save_figure

    table = kernel_size_table(report)
    with open(out / "kernel_sizes.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "layer", "kernel_size_mean", "kernel_size_std", "n"])
        for label, layers in table.items():
            for layer, values in sorted(layers.items()):
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                writer.writerow([label, layer, f"{statistics.fmean(values):.3f}", f"{std:.3f}", len(values)])
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (label, layers) in enumerate(table.items()):
        index = sorted(layers)
        mean = [statistics.fmean(layers[i]) for i in index]
        std = [statistics.stdev(layers[i]) if len(layers[i]) > 1 else 0.0 for i in index]
        seeds = max(len(v) for v in layers.values())
        dodge = (k - (len(table) - 1) / 2) * 0.08  # rows side by side at each layer: error bars apart
        ax.errorbar([i + dodge for i in index], mean, yerr=std, marker="o", capsize=3, label=f"{label} (n={seeds})")
    for row in report.rows:
        if not any(seed_run.run_id for seed_run in row.runs):
            no_runs_entry(ax, row.label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers
    paper = report.definition.title.partition(":")[0]
    finish_axes(ax, title=f"{paper}: learned kernel sizes at the end of training",
                xlabel="layer (FlexConv/CKConv, 0 = stem)", ylabel="learned kernel size (pixels)",
                empty_note="no finished run logged kernel_size_l* metrics")
    if table and ax.get_legend():
        ax.get_legend().set_title("mean ± std over seeds", prop={"size": 7})
    return [out / "kernel_sizes.csv", *save_figure(fig, out, "kernel_sizes")]


register_report(ReportDefinition(
    name="flexconv-table3-cifar10",
    title="FlexConv Table 3, CIFAR-10: test accuracy %",
    space="flexconv-table3-cifar10.yaml",
    published={"FlexNet-7": 92.2, "Conv k=3": 89.5, "Conv k=33": 78.0, "N-Jet": 91.7},
    published_source=SOURCE,
    figures=(kernel_sizes,),
))

# run_crossres.py: the source accuracy after training at 16x16, out of the box at 32x32, and
# after fine-tuning at 32x32 (the main column).
CROSS_RES_METRIC = "final_test_acc"

register_report(ReportDefinition(
    name="flexconv-table4-crossres-cifar10",
    title="FlexConv Table 4, CIFAR-10 16 -> 32: fine-tuned test accuracy %",
    space="flexconv-table4-crossres-cifar10.yaml",
    metric=CROSS_RES_METRIC,
    published={"FlexNet-7 Gabor reg.": 89.0, "FlexNet-7 Gabor+mask reg.": 87.6, "FlexNet-7 no reg.": 88.8, "ResNet-44": 92.9},
    published_source=SOURCE,
    columns=(
        Column("source", "source_test_acc",
               {"FlexNet-7 Gabor reg.": 86.5, "FlexNet-7 Gabor+mask reg.": 85.1, "FlexNet-7 no reg.": 86.4, "ResNet-44": 85.8}),
        Column("OOTB", "ootb_test_acc",
               {"FlexNet-7 Gabor reg.": 82.7, "FlexNet-7 Gabor+mask reg.": 81.8, "FlexNet-7 no reg.": 52.0, "ResNet-44": 54.3}),
    ),
    figures=(kernel_sizes,),
))

register_report(ReportDefinition(
    name="flexconv-table6-imagenet32",
    title="FlexConv Table 6, ImageNet-32: top-1 test accuracy %",
    space="flexconv-table6-imagenet32.yaml",
    published={"FlexNet-5": 24.9},
    published_source=SOURCE,
    columns=(Column("top-5", "test_top5", {"FlexNet-5": 47.7}),),
    figures=(kernel_sizes,),
))

register_report(ReportDefinition(
    name="flexconv-table7-crossres-imagenetk",
    title="FlexConv Table 7, ImageNet 16 -> 32: fine-tuned test accuracy %",
    space="flexconv-table7-crossres-imagenetk.yaml",
    metric=CROSS_RES_METRIC,
    published={"FlexNet-5": 24.8},
    published_source=SOURCE,
    columns=(
        Column("source", "source_test_acc", {"FlexNet-5": 14.9}),
        Column("OOTB", "ootb_test_acc", {"FlexNet-5": 12.9}),
    ),
))

register_report(ReportDefinition(
    name="flexconv-table8-mnist",
    title="FlexConv Table 8, MNIST: test accuracy %",
    space="flexconv-table8-mnist.yaml",
    published={"FlexNet-7": 99.7},
    published_source=SOURCE,
))

register_report(ReportDefinition(
    name="flexconv-table9-stl10",
    title="FlexConv Table 9, STL-10: test accuracy %",
    space="flexconv-table9-stl10.yaml",
    published={"FlexNet-7": 68.6},
    published_source=SOURCE,
))
