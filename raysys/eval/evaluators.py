"""Evaluators: what ``python -m raysys eval`` measures, one registry entry each.

An evaluator runs on one worker's shard of the validation stream and keeps
*summable* totals (counts, sums), so the distributed runner all-reduces them
and only then turns them into metrics. Images arrive as normalised
``(N, C, side, side)`` batches where ``side = evaluate.crop + margin`` of the
most demanding evaluator; each evaluator crops what it needs.

Registered here: ``accuracy`` (``-e``: top-1/top-5 on the centre crop). A family
adds its own with ``@register_evaluator("name")``: the antialiased family's
``shift-consistency`` (``-es``) and ``diagonal-consistency`` (``-ed``, whose
per-image arrays become MLflow artifacts, :func:`diagonal_files`), MIMO's ``dynamic``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from raysys.config.schema import config_section
from raysys.registry import Registry


@config_section("evaluate")
@dataclass
class EvaluateConfig:
    """Evaluation of a trained model (``python -m raysys eval``)."""

    # Evaluators `eval` runs: accuracy, shift-consistency, diagonal-consistency, ...
    metrics: List[str] = field(default_factory=lambda: ["accuracy"])
    # Evaluators run on the trained model at the end of `train`, into the same MLflow run.
    after_training: List[str] = field(default_factory=list)
    # The model's input side (0 = data.resize); crops are taken from larger images.
    crop: int = 0
    # Per-worker evaluation batch (0 = train.eval_batch_size, else train.batch_size / workers).
    batch_size: int = 0
    # Which split to evaluate ("" = data.test_split) and how many of its rows (0 = all).
    split: str = ""
    limit: int = 0


@dataclass(frozen=True)
class EvalSettings:
    """The model's input side, and the ``evaluate`` section as plain values.

    ``options`` holds the fields families add to the section (``@config_fields("evaluate")``),
    which only their evaluators read: e.g. the antialiased family's ``max_shift``.
    """

    crop: int
    options: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any) -> "EvalSettings":
        section = OmegaConf.to_container(cfg.evaluate, resolve=True)
        return cls(int(section["crop"] or cfg.data.resize), section)


class Evaluator:
    """One measurement over a worker's shard; totals are summed across workers."""

    def __init__(self, settings: EvalSettings):
        self.settings = settings

    def margin(self) -> int:
        """Pixels beyond ``crop`` that the images must have."""
        return 0

    def passes(self) -> int:
        return 1

    def update(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, generator: torch.Generator) -> None:
        raise NotImplementedError

    def totals(self) -> List[float]:
        raise NotImplementedError

    def metrics(self, totals: List[float]) -> Dict[str, float]:
        raise NotImplementedError

    def arrays(self) -> Optional[Dict[str, np.ndarray]]:
        """Per-image arrays (rows in any order, with an ``index`` column), or None."""
        return None

    @classmethod
    def table(cls, metrics: Dict[str, float]) -> str:
        """A CSV of this evaluator's ``metrics`` that ``raysys eval`` logs beside its JSON ("" for none)."""
        return ""


EVALUATORS: Registry[type] = Registry("evaluator", config_key=("evaluate.metrics", "evaluate.after_training"))


def register_evaluator(name: str, aliases=()):
    return EVALUATORS.register(name, aliases)


def center(images: torch.Tensor, size: int) -> torch.Tensor:
    top = (images.shape[-2] - size) // 2
    left = (images.shape[-1] - size) // 2
    return images[:, :, top : top + size, left : left + size]


@register_evaluator("accuracy", aliases=["top1", "e"])
class Accuracy(Evaluator):
    """Top-1/top-5 accuracy (percent) and mean loss on the centre ``crop``: ``main.py -e``."""

    def __init__(self, settings: EvalSettings):
        super().__init__(settings)
        self.loss = self.top1 = self.top5 = self.count = 0.0

    def update(self, model, images, labels, index, generator) -> None:
        outputs = model(center(images, self.settings.crop)).float()
        self.loss += float(nn.functional.cross_entropy(outputs, labels, reduction="sum"))
        k = min(5, outputs.shape[1])
        top = outputs.topk(k, dim=1).indices
        self.top1 += float((top[:, 0] == labels).sum())
        self.top5 += float((top == labels[:, None]).any(1).sum())
        self.count += labels.shape[0]

    def totals(self) -> List[float]:
        return [self.loss, self.top1, self.top5, self.count]

    def metrics(self, totals: List[float]) -> Dict[str, float]:
        loss, top1, top5, count = totals
        n = max(count, 1)
        return {"eval_loss": loss / n, "eval_top1": 100 * top1 / n, "eval_top5": 100 * top5 / n, "eval_count": count}


def build_evaluators(names: List[str], settings: EvalSettings) -> Dict[str, Evaluator]:
    """Canonical name -> evaluator, in the given order, duplicates dropped."""
    out: Dict[str, Evaluator] = {}
    for name in names:
        canonical = EVALUATORS.canonical(str(name))
        if canonical not in out:
            out[canonical] = EVALUATORS.get(canonical)(settings)
    return out


def image_side(evaluators: Dict[str, Evaluator], settings: EvalSettings) -> int:
    return settings.crop + max([e.margin() for e in evaluators.values()] or [0])


def diagonal_files(arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The original's ``diag_*.npy`` arrays, rows in validation order."""
    order = np.argsort(arrays["index"], kind="stable")
    return {f"diag_{key}": arrays[key][order] for key in ("probs", "probs2", "corrs", "preds") if key in arrays}
