"""The antialiased family's recipes: the default loop, and what ``main.py --finetune`` / ``--resume`` start from.

- ``antialiased``: the default recipe. A run of a shared torchvision baseline (``resnext50_32x4d``)
  names it to keep the ``antialias`` section (``antialias.weights``): a run's sections come
  from the families of its model and recipe.
- ``antialiased-finetune``: ``antialias.weights`` is a torchvision baseline's file, copied into
  the ``<arch>_lpf<N>`` model (the original's ``--finetune``, main.py:229-232); any other
  file is refused for an antialiased model (raysys/families/antialiased/weights.py).
- ``antialiased-resume``: ``antialias.weights`` is a checkpoint to continue (the original's
  ``--resume``, main.py:276-293): its weights, and, when it holds an optimizer, its epoch,
  the optimizer state, the schedule at that epoch and the best top-1 so far. An original
  ``.pth.tar`` (``epoch``, ``state_dict``, ``best_acc1``, ``optimizer``) and a raysys
  ``state.pt`` both resume. Each epoch then logs ``best_test_acc``, the best top-1 including
  the checkpoint's ``best_acc1``.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict

import torch

from raysys.errors import CheckpointError
from raysys.families.antialiased.models import FINETUNE_RECIPE
from raysys.train.checkpoint import load_failure
from raysys.train.recipes.base import RECIPES, Recipe

RAYSYS_STATE_KEYS = {"model", "optimizer", "scheduler", "epoch", "rng"}


@RECIPES.register("antialiased")
class AntialiasedRecipe(Recipe):
    """The default recipe, under the family's name."""


@RECIPES.register(FINETUNE_RECIPE)
class FinetuneRecipe(AntialiasedRecipe):
    """``antialias.weights`` is a torchvision baseline's: the model adapter allows it (``--finetune``)."""


@RECIPES.register("antialiased-resume")
class ResumeRecipe(AntialiasedRecipe):
    """Continue the checkpoint ``antialias.weights`` (``--resume``): epoch, optimizer, schedule, best top-1."""

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.best_test_acc = 0.0

    def on_fit_start(self, loop: Any) -> None:
        path = Path(self.cfg.antialias.weights)
        state = _read(path)
        if RAYSYS_STATE_KEYS <= set(state):
            loop.restore(state, str(path))
            self.best_test_acc = max((float(m.get("test_acc", 0.0)) for m in loop.history), default=0.0)
            return
        if not isinstance(state.get("optimizer"), dict):
            return  # weights only (loaded when the model was built), as the original: "No optimizer saved"
        epoch = int(state["epoch"])
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": a replay, not training
            warnings.simplefilter("ignore")
            for _ in range(epoch * loop.wc.steps_per_epoch):
                loop.scheduler.step()
        lrs = loop.scheduler.get_last_lr()
        try:
            loop.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"the optimizer state of {path} does not fit this model's optimizer: {exc}") from None
        for group, lr in zip(loop.optimizer.param_groups, lrs):
            group["lr"] = lr  # the schedule's lr at this epoch (the original sets it from the epoch too)
        loop.start_epoch = epoch
        self.best_test_acc = float(state.get("best_acc1", 0.0)) / 100.0  # the original's top-1 is a percentage

    def named_metrics(self, metrics: Dict[str, float]) -> Dict[str, float]:
        self.best_test_acc = max(self.best_test_acc, float(metrics.get("test_acc", 0.0)))
        return {**metrics, "best_test_acc": self.best_test_acc}

    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "best_test_acc": self.best_test_acc}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.best_test_acc = float(state.get("best_test_acc", self.best_test_acc))


def _read(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} to resume does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"refusing to load checkpoint {path}: {load_failure(exc, 'checkpoint')}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not a dict")
    return state
