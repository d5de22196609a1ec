"""The antialiased family's evaluators: shift consistency (``main.py -es``) and diagonal consistency (``-ed``).

They measure with :mod:`raysys.families.antialiased.consistency`; their settings are the shared
``evaluate`` section's ``crop``, ``max_shift``, ``shift_passes`` and ``diagonal_offsets``
(:class:`raysys.eval.evaluators.EvalSettings`). The diagonal evaluator's per-image arrays become the
original's ``diag_*.npy`` MLflow artifacts (:func:`raysys.eval.evaluators.diagonal_files`).
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from raysys.eval.evaluators import EvalSettings, Evaluator, register_evaluator
from raysys.families.antialiased import consistency


@register_evaluator("shift-consistency", aliases=["consistency", "es"])
class ShiftConsistency(Evaluator):
    """Percent of images classified alike on two random ``crop`` windows: ``main.py -es``."""

    def __init__(self, settings: EvalSettings):
        super().__init__(settings)
        self.count = consistency.AgreementCount()

    def margin(self) -> int:
        return self.settings.max_shift

    def passes(self) -> int:
        return self.settings.shift_passes

    def update(self, model, images, labels, index, generator) -> None:
        self.count = self.count + consistency.shift_agreement(model, images, generator, self.settings.crop, self.settings.max_shift)

    def totals(self) -> List[float]:
        return [self.count.agree, self.count.total]

    def metrics(self, totals: List[float]) -> Dict[str, float]:
        count = consistency.AgreementCount(int(totals[0]), int(totals[1]))
        return {"eval_consistency": count.percent, "eval_consistency_pairs": count.total}


@register_evaluator("diagonal-consistency", aliases=["diagonal", "ed"])
class DiagonalConsistency(Evaluator):
    """Predictions along the diagonal shifts (d, d): ``main.py -ed``; arrays saved as artifacts."""

    def __init__(self, settings: EvalSettings):
        super().__init__(settings)
        self.parts: List[Dict[str, np.ndarray]] = []

    def margin(self) -> int:
        return self.settings.diagonal_offsets - 1

    def update(self, model, images, labels, index, generator) -> None:
        result = consistency.diagonal_shift(model, images, labels, self.settings.crop, self.settings.diagonal_offsets)
        part = {name: value.numpy() for name, value in result.items()}
        part["index"] = index.cpu().numpy().astype(np.int64)
        self.parts.append(part)

    def totals(self) -> List[float]:
        corrs = sum(float(p["corrs"].sum()) for p in self.parts)
        probs = sum(float(p["probs"].sum()) for p in self.parts)
        same = sum(float((p["preds"] == p["preds"][:, :1]).all(1).sum()) for p in self.parts)
        images = sum(len(p["index"]) for p in self.parts)
        return [corrs, probs, same, images]

    def metrics(self, totals: List[float]) -> Dict[str, float]:
        corrs, probs, same, images = totals
        cells = max(images * self.settings.diagonal_offsets, 1)
        return {
            "eval_diagonal_top1": 100 * corrs / cells,
            "eval_diagonal_prob": probs / cells,
            # Images whose prediction is the same at every diagonal shift.
            "eval_diagonal_stable": 100 * same / max(images, 1),
        }

    def arrays(self) -> Optional[Dict[str, np.ndarray]]:
        if not self.parts:
            return {"index": np.zeros(0, np.int64)}
        return {key: np.concatenate([p[key] for p in self.parts]) for key in self.parts[0]}
