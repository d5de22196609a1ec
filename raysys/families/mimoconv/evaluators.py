"""Dynamic inference of superposition models (MIMOConv's ``validate_dynamic.py``).

A model trained at capacity N can run with any number of bundled images n that
divides N: n = 1 is the slow, most accurate mode, n = N the fastest. The
``dynamic`` evaluator measures, for every such n, top-1 accuracy and the
throughput of the model's forward pass (images/s per worker). Unlike the
original, whose timer did not wait for the GPU, the clock is read after
``torch.cuda.synchronize``, and one untimed warm-up forward precedes each
mode's first timed batch.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from raysys.eval.evaluators import Evaluator, register_evaluator
from raysys.eval.overrides import allow_eval_override

# Bundle sizes with a slot in the evaluator's totals (fixed, so every worker sums the same list).
MAX_SUPERPOSITION = 16


def install_batch_padding(model: nn.Module) -> nn.Module:
    """Let a superposing ``model`` take any batch size: pad to a multiple of its superposition.

    The model needs batches divisible by the number n of bundled images. The
    original truncated the batch (losing up to n - 1 images of the last test
    batch); here the batch is topped up with copies of its own first images and
    their outputs are dropped, so every image is predicted exactly once.
    Forward hooks leave the state dict unchanged; installing twice is a no-op.
    """
    if getattr(model, "_raysys_batch_padding", False):
        return model
    pending: List[int] = []

    def pad(module: nn.Module, args: Tuple[Any, ...]):
        images = args[0]
        size = images.shape[0]
        pending.append(size)
        missing = (-size) % int(module.superposition)
        if missing == 0:
            return None
        extra = images[torch.arange(missing, device=images.device) % size]
        return (torch.cat([images, extra]), *args[1:])

    def trim(module: nn.Module, args: Tuple[Any, ...], output: torch.Tensor):
        return output[: pending.pop()]

    model.register_forward_pre_hook(pad)
    model.register_forward_hook(trim)
    model._raysys_batch_padding = True
    return model


def modes(capacity: int) -> List[int]:
    """The superpositions a capacity-N model can run at: the divisors of N."""
    return [n for n in range(1, capacity + 1) if capacity % n == 0]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@register_evaluator("dynamic", aliases=["superposition", "validate-dynamic"])
class DynamicSuperposition(Evaluator):
    """Top-1 (%) and forward throughput (images/s per worker) at every superposition n dividing the capacity."""

    def __init__(self, settings):
        super().__init__(settings)
        slots = MAX_SUPERPOSITION + 1
        self.correct = [0.0] * slots
        self.count = [0.0] * slots
        self.seconds = [0.0] * slots
        self.warm = set()

    def update(self, model, images, labels, index, generator) -> None:
        install_batch_padding(model)
        previous = model.superposition
        try:
            for n in modes(int(model.capacity)):
                if n > MAX_SUPERPOSITION:
                    continue
                model.set_superposition(n)
                if n not in self.warm:
                    model(images)
                    self.warm.add(n)
                _sync(images.device)
                start = time.perf_counter()
                outputs = model(images)
                _sync(images.device)
                self.seconds[n] += time.perf_counter() - start
                self.correct[n] += float((outputs.argmax(1) == labels).sum())
                self.count[n] += labels.shape[0]
        finally:
            model.set_superposition(previous)

    def totals(self) -> List[float]:
        return [*self.correct, *self.count, *self.seconds]

    def metrics(self, totals: List[float]) -> Dict[str, float]:
        slots = MAX_SUPERPOSITION + 1
        correct, count, seconds = totals[:slots], totals[slots: 2 * slots], totals[2 * slots:]
        out: Dict[str, float] = {}
        for n in range(1, slots):
            if count[n] > 0:
                out[f"eval_dynamic_n{n}_top1"] = 100 * correct[n] / count[n]
                out[f"eval_dynamic_n{n}_images_per_sec"] = count[n] / max(seconds[n], 1e-12)
                out[f"eval_dynamic_n{n}_count"] = count[n]
        return out

    @classmethod
    def table(cls, metrics: Dict[str, float]) -> str:
        """One row per superposition mode: the table of ``validate_dynamic.py``."""
        rows = mode_rows(metrics)
        if not rows:
            return ""
        lines = ["superposition,top1,images_per_sec,count"] + [
            f"{r['superposition']},{r['top1']:.4f},{r['images_per_sec']:.2f},{int(r['count'])}" for r in rows]
        return "\n".join(lines) + "\n"


def mode_rows(metrics: Dict[str, float]) -> List[Dict[str, float]]:
    """The per-mode table (superposition, top1, images_per_sec, count) of ``dynamic`` metrics."""
    rows = []
    for n in range(1, MAX_SUPERPOSITION + 1):
        key = f"eval_dynamic_n{n}_top1"
        if key in metrics:
            rows.append({
                "superposition": n,
                "top1": metrics[key],
                "images_per_sec": metrics[f"eval_dynamic_n{n}_images_per_sec"],
                "count": metrics[f"eval_dynamic_n{n}_count"],
            })
    return rows


# ``raysys eval <trained run> superposition.sup_low=2``: the original's way to pick a mode.
allow_eval_override("superposition.sup_low")
# ``raysys eval <trained run> mimo.eval_batch_stats=true``: evaluate as the original (BatchNorm in training mode).
allow_eval_override("mimo.eval_batch_stats")
