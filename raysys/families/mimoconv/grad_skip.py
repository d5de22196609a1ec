"""MIMOConv's gradient-skip rule: drop a step whose gradient norm is an outlier.

A step is taken only if its (clipped) gradient norm is finite and below
``ratio`` times the mean norm of the steps accepted in the previous epoch; in
the first epoch the threshold is infinite. When an epoch accepts no step, the
previous threshold stays.

Its state (:meth:`GradientSkipRule.state_dict`) is checkpointed with the recipe, so a resumed
run's first epoch has the threshold the uninterrupted run would have had.
"""
from __future__ import annotations

import math
from typing import Dict


class GradientSkipRule:
    def __init__(self, ratio: float):
        self.ratio = float(ratio)
        self.reference = math.inf  # mean accepted norm of the previous epoch
        self._sum = 0.0
        self._accepted = 0
        self._skipped = 0

    @property
    def threshold(self) -> float:
        return self.ratio * self.reference

    def start_epoch(self) -> None:
        """Close the last epoch: its mean accepted norm becomes the new reference."""
        if self._accepted:
            self.reference = self._sum / self._accepted
        self._sum, self._accepted, self._skipped = 0.0, 0, 0

    def accept(self, norm: float) -> bool:
        """Whether to apply a step with gradient norm ``norm`` (and record it)."""
        if math.isfinite(norm) and norm < self.threshold:
            self._sum += norm
            self._accepted += 1
            return True
        self._skipped += 1
        return False

    def state_dict(self) -> Dict[str, float]:
        """The reference and the running epoch's sums: plain floats and ints (weights_only-loadable)."""
        return {"reference": float(self.reference), "sum": float(self._sum), "accepted": int(self._accepted),
                "skipped": int(self._skipped)}

    def load_state_dict(self, state: Dict[str, float]) -> None:
        self.reference, self._sum = float(state["reference"]), float(state["sum"])
        self._accepted, self._skipped = int(state["accepted"]), int(state["skipped"])

    def metrics(self) -> Dict[str, float]:
        """This epoch so far: mean accepted norm, and the fraction of skipped steps."""
        steps = self._accepted + self._skipped
        return {
            "grad_norm": self._sum / self._accepted if self._accepted else float("nan"),
            "grad_skipped_fraction": self._skipped / steps if steps else 0.0,
        }
