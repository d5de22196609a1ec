"""Metric names as runs record them: grouped by slash (``train/loss``, ``test/acc``) so MLflow's UI groups them.

The training loop and the recipes compute metrics under flat names (``train_loss``,
``test_acc``); :func:`grouped` gives the recorded name, once, where a metric leaves
the process (MLflow, the JSON line, sweep summaries). Runs recorded before the
grouping hold the flat names: read a metric with :func:`value`, which finds either.

The rules, in order: a name with a ``/`` is kept; :data:`EXPLICIT` names; per-layer
names (:data:`LAYER_PREFIXES`) go to ``layers/``; a leading ``<group>_`` of
:data:`GROUPS` becomes ``<group>/``; anything else (``epoch``) is kept.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

GROUPS = ("train", "test", "val", "source", "ootb", "eval")  # a leading ``<group>_`` becomes ``<group>/``
EXPLICIT = {  # flat names outside the prefix rule
    "lr": "train/lr",
    "phase": "train/phase",
    "skipped_steps": "train/skipped_steps",
    "nonfinite_losses": "train/nonfinite_losses",
    "grad_skip_threshold": "train/grad_skip_threshold",  # MIMO's gradient-skip rule
    "grad_skipped_fraction": "train/grad_skipped_fraction",
    "epoch_time": "time/epoch",
    "images_per_sec": "time/images_per_sec",
    "avg_time": "time/avg_epoch",  # STIR: the mean of train_time over the run's epochs
    "best_test_acc": "test/best_acc",
    "final_test_acc": "test/final_acc",
    "best_acc": "val/best_acc",  # STIR: the best val_acc (its early stopping's)
    "resolution": "data/resolution",
    "mean_relu_parameter": "model/mean_relu_parameter",  # MIMO
    "mean_abs_alpha": "model/mean_abs_alpha",  # MIMO
    "trials": "sweep/trials",  # a sweep's parent run
    "trials_started": "sweep/trials_started",
    "trials_skipped": "sweep/trials_skipped",
    "trials_failed": "sweep/trials_failed",
}
# FlexConv's per-layer measurements (``kernel_size_l03``, ``gabor_freq_l00``, ...): one ``layers/`` group.
LAYER_PREFIXES = ("kernel_size_", "gabor_freq_", "nyquist_", "mask_sigma_")
LAYERS = "layers"


def grouped(name: str) -> str:
    """The recorded name of a flat metric name; a name that already has a group is kept."""
    if "/" in name:
        return name
    if name in EXPLICIT:
        return EXPLICIT[name]
    if name.startswith(LAYER_PREFIXES):
        return f"{LAYERS}/{name}"
    head, _, rest = name.partition("_")
    return f"{head}/{rest}" if head in GROUPS and rest else name


def grouped_metrics(metrics: Mapping[str, Any]) -> Dict[str, Any]:
    return {grouped(k): v for k, v in metrics.items()}


def former_names(name: str) -> List[str]:
    """The flat names a run recorded before grouping may hold ``name`` under."""
    recorded = grouped(name)
    candidates = [name, *[k for k, v in EXPLICIT.items() if v == recorded], recorded.replace("/", "_", 1),
                  recorded.removeprefix(f"{LAYERS}/")]
    return [flat for flat in dict.fromkeys(candidates) if flat != recorded and grouped(flat) == recorded]


def spellings(name: str) -> List[str]:
    """Every name a run may hold ``name`` under: the recorded (grouped) one first, then the former flat ones."""
    return [grouped(name), *former_names(name)]


def value(metrics: Mapping[str, Any], name: str, default: Optional[Any] = None) -> Optional[Any]:
    """``name``'s value (flat or grouped spelling) in ``metrics`` recorded before or after grouping."""
    for spelling in spellings(name):
        if spelling in metrics:
            return metrics[spelling]
    return default


def flat_view(metrics: Mapping[str, Any]) -> Dict[str, Any]:
    """``metrics`` (a run's, either spelling) keyed by the flat names the loop and the recipes compute.

    For code written against the flat names: each recorded name appears under every
    flat spelling it stands for (``train/lr`` as ``lr`` and ``train_lr``).
    """
    view = dict(metrics)
    for name, v in metrics.items():
        for flat in former_names(name):
            view.setdefault(flat, v)
    return view
