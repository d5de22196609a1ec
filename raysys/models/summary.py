"""A layer table of a model: output shapes, parameter counts and layer extras.

A layer can add columns by defining ``summary_info() -> dict`` (FlexConv
reports its current effective kernel size that way).
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _is_reported(module: nn.Module) -> bool:
    leaf = not any(True for _ in module.children())
    return leaf or hasattr(module, "summary_info")


@torch.no_grad()
def summarize(model: nn.Module, input_shape: List[int]) -> Dict[str, Any]:
    """Run one dummy batch of ``input_shape`` (N, C, H, W) and tabulate the layers."""
    rows: List[Dict[str, Any]] = []
    hooks = []
    for name, module in model.named_modules():
        if not name or not _is_reported(module):
            continue

        def record(mod, _inputs, output, name=name):
            shape = list(output.shape) if isinstance(output, torch.Tensor) else None
            row = {
                "layer": name,
                "type": type(mod).__name__,
                "output_shape": shape,
                "params": sum(p.numel() for p in mod.parameters(recurse=False)),
            }
            if hasattr(mod, "summary_info"):
                row.update(mod.summary_info())
            rows.append(row)

        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        output = model(torch.zeros(*input_shape))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return {
        "model": type(model).__name__,
        "input_shape": list(input_shape),
        "output_shape": list(output.shape),
        "parameters": count_parameters(model),
        "total_parameters": count_parameters(model, trainable_only=False),
        "layers": rows,
    }


def format_table(summary: Dict[str, Any]) -> str:
    """The summary as a fixed-width text table."""
    extra = sorted({k for row in summary["layers"] for k in row} - {"layer", "type", "output_shape", "params"})
    header = ["layer", "type", "output shape", "params", *extra]
    body = [
        [row["layer"], row["type"], str(row["output_shape"]), f"{row['params']:,}", *[str(row.get(k, "")) for k in extra]]
        for row in summary["layers"]
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    millions = summary["parameters"] / 1e6
    lines.append(f"\n{summary['model']}: {summary['parameters']:,} trainable parameters ({millions:.2f}M)")
    if summary.get("total_parameters", summary["parameters"]) != summary["parameters"]:
        lines[-1] += f", {summary['total_parameters']:,} in total (incl. frozen)"
    lines.append(f"input {summary['input_shape']} -> output {summary['output_shape']}")
    return "\n".join(lines)
