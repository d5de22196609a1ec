"""The original's MLflow params of a STIR run (its model and data names, evaluation, kernel size, ...)."""
from __future__ import annotations

from typing import Any, Dict


def original_params(cfg) -> Dict[str, Any]:
    """The original's MLflow params of a run."""
    return {
        "model": str(cfg.model.name).removeprefix("stir_"),
        "data": str(cfg.data.name).removeprefix("stir-"),
        "evaluation": int(cfg.stir.evaluation),
        "kernel_size": int(cfg.stir.kernel_size),
        "interpolation": str(cfg.stir.interpolation),
        "lr": float(cfg.train.lr),
        "seed": int(cfg.seed),
    }
