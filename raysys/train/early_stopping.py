"""Early stopping on a per-epoch metric, keeping the best epoch's weights.

``train.early_stopping_patience = p > 0``: an epoch whose
``train.early_stopping_metric`` is strictly higher than every earlier one is
the new best (its weights are kept, in memory and in the checkpoint); after
``p`` epochs in a row without a new best the run stops, and the best weights
are loaded back before the recipe's final evaluation. This is the STIR
original's ``Record`` (patience 10 on validation accuracy). The metric may be
named as the loop computes it (``val_acc``) or as MLflow records it (``val/acc``).
"""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional

from torch import nn

from raysys.errors import ConfigError
from raysys.track import metric_names


class EarlyStopping:
    """Tracks the best value of one metric and the model state that reached it."""

    def __init__(self, patience: int, metric: str):
        if patience < 0:
            raise ConfigError(f"train.early_stopping_patience={patience} must be >= 0 (0 = off)")
        self.patience, self.metric = int(patience), metric
        self.best: Optional[float] = None
        self.best_epoch = 0
        self.best_state: Optional[Dict[str, Any]] = None
        self.stale = 0

    @classmethod
    def from_config(cls, cfg) -> "EarlyStopping":
        return cls(int(cfg.train.early_stopping_patience), str(cfg.train.early_stopping_metric))

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    @property
    def stopped(self) -> bool:
        """True once ``patience`` epochs passed without a new best (also after a resume)."""
        return self.enabled and self.stale >= self.patience

    def update(self, metrics: Dict[str, float], model: nn.Module) -> bool:
        """Record an epoch; True when the run should stop now."""
        if not self.enabled:
            return False
        found = metric_names.value(metrics, self.metric)
        if found is None:
            raise ConfigError(f"train.early_stopping_metric={self.metric!r} is not an epoch metric; "
                              f"there are {sorted(metric_names.grouped(k) for k in metrics)}")
        value = float(found)
        if self.best is None or value > self.best:
            self.best, self.best_epoch, self.stale = value, int(metrics.get("epoch", 0)), 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.stale += 1
        return self.stale >= self.patience

    def restore_best(self, model: nn.Module) -> None:
        """Load the best epoch's weights into ``model`` (nothing when disabled)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "stale": self.stale, "best_state": self.best_state}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.stale, self.best_state = state["stale"], state["best_state"]
