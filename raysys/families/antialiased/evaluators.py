"""The antialiased family's evaluators: shift consistency (``main.py -es``) and diagonal consistency (``-ed``).

They measure with :mod:`raysys.families.antialiased.consistency`; their settings are the shared
``evaluate.crop`` and the fields this family adds to the ``evaluate`` section (:class:`ConsistencyFields`:
``max_shift``, ``shift_passes``, ``diagonal_offsets``), present only in runs that use the family. The diagonal evaluator's per-image arrays become the
original's ``diag_*.npy`` MLflow artifacts (:func:`raysys.eval.evaluators.diagonal_files`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from raysys.config import renames
from raysys.config.schema import config_fields
from raysys.eval.evaluators import EvalSettings, Evaluator, register_evaluator
from raysys.families.antialiased import consistency


@config_fields("evaluate")
@dataclass
class ConsistencyFields:
    """``evaluate.*`` fields of the consistency evaluators (``main.py`` defaults)."""

    # Shift consistency: offsets in [0, max_shift)^2, over `shift_passes` passes (--epochs-shift).
    max_shift: int = 32
    shift_passes: int = 5
    # Diagonal consistency: crops at (d, d), d < diagonal_offsets.
    diagonal_offsets: int = 33


# Before 2026-12-03 these were fields of the shared section: every run's config held them.
for _field in dataclasses.fields(ConsistencyFields):
    renames.moved_to_family(f"evaluate.{_field.name}", _field.default)


@register_evaluator("shift-consistency", aliases=["consistency", "es"])
class ShiftConsistency(Evaluator):
    """Percent of images classified alike on two random ``crop`` windows: ``main.py -es``."""

    def __init__(self, settings: EvalSettings):
        super().__init__(settings)
        self.count = consistency.AgreementCount()

    def margin(self) -> int:
        return int(self.settings.options["max_shift"])

    def passes(self) -> int:
        return int(self.settings.options["shift_passes"])

    def update(self, model, images, labels, index, generator) -> None:
        self.count = self.count + consistency.shift_agreement(model, images, generator, self.settings.crop, int(self.settings.options["max_shift"]))

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
        return int(self.settings.options["diagonal_offsets"]) - 1

    def update(self, model, images, labels, index, generator) -> None:
        result = consistency.diagonal_shift(model, images, labels, self.settings.crop, int(self.settings.options["diagonal_offsets"]))
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
        cells = max(images * int(self.settings.options["diagonal_offsets"]), 1)
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
