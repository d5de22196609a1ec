"""STIR evaluation scenarios: which object scales each split of a run sees.

The paper "Just a Matter of Scale?" trains and validates on one band of
object sizes and tests on another (its ``--evaluation`` flag, 1-4). Train and
validation use the same scales (different instances); test uses the test
instances at the listed scales. Config: ``stir.evaluation`` (0 = no scale
filter, every split keeps all 48 scales).

The stream filters rows by the ``scale`` column of STIR shards, so one
generated dataset serves every scenario (see :func:`scale_filter`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
from raysys.config import renames
from raysys.config.schema import config_section
from raysys.errors import ConfigError

MIN_SCALE = 17
MAX_SCALE = 64
ALL_SCALES: Tuple[int, ...] = tuple(range(MIN_SCALE, MAX_SCALE + 1))
SCALE_COLUMN = "scale"


def _band(low: int, high: int) -> Tuple[int, ...]:
    return tuple(range(low, high + 1))


@dataclass(frozen=True)
class Scenario:
    """One evaluation scenario: scales for train/val and for test."""

    number: int
    name: str
    train_scales: Tuple[int, ...]
    test_scales: Tuple[int, ...]

    def scales(self, split: str) -> Tuple[int, ...]:
        """The scales of ``split`` ("train", "val" or "test")."""
        if split in ("train", "val"):
            return self.train_scales
        if split == "test":
            return self.test_scales
        raise ConfigError(f"STIR split {split!r} is not one of ['test', 'train', 'val']")


SCENARIOS: Dict[int, Scenario] = {
    s.number: s
    for s in (
        Scenario(1, "Small2Large", _band(17, 32), _band(33, 64)),
        Scenario(2, "Mid2Rest", _band(33, 48), _band(17, 32) + _band(49, 64)),
        Scenario(3, "Large2Small", _band(49, 64), _band(17, 48)),
        Scenario(4, "All2All", ALL_SCALES, ALL_SCALES),
    )
}


@config_section("stir")
@dataclass
class StirConfig:
    """STIR runs: ``evaluation`` picks the scenario (1-4 as in the original; 0 = all scales).

    ``kernel_size`` (3, 7, 11, 15) and ``interpolation`` (nearest, bilinear,
    bicubic, area) configure the STIR models (raysys/families/stir/models.py); the
    paper's values are 7 and bicubic.

    ``analysis`` logs ``errors.npz`` / ``indices.npz`` at the end of a run
    (raysys/families/stir/analysis.py; costly for the scale-pool models on CPU);
    ``analysis_raw_pixels`` feeds it 0..255 pixels as the original did.

    ``shuffle``: ``epoch`` (reshuffle the train stream every epoch) or ``once``
    (the original's order: its train rows shuffled once by RandomState(42),
    the same order every epoch; :func:`original_train_order`).
    ``disco_basis``: path of the original's DISCO proxy basis ``.pt`` for
    ``stir_disco`` (empty: computed, raysys/families/stir/layers/sesn.py).
    """

    evaluation: int = 0
    kernel_size: int = 7
    interpolation: str = "bicubic"
    analysis: bool = True
    analysis_raw_pixels: bool = False
    shuffle: str = "epoch"
    disco_basis: str = ""


# Runs recorded before these keys reshuffled every epoch and computed the DISCO basis.
renames.added_key("stir.shuffle", "epoch")
renames.added_key("stir.disco_basis", "")

SHUFFLES = ("epoch", "once")
ORIGINAL_SHUFFLE_SEED = 42  # STIRDataset._shuffle_arrays (data/dataset.py:64)


def get_scenario(evaluation: int) -> Optional[Scenario]:
    """The scenario for ``stir.evaluation``; None for 0 (no filter); ConfigError otherwise."""
    if evaluation == 0:
        return None
    if evaluation not in SCENARIOS:
        names = ", ".join(f"{n} ({s.name})" for n, s in SCENARIOS.items())
        raise ConfigError(f"stir.evaluation={evaluation!r} is not one of 0 (all scales), {names}")
    return SCENARIOS[evaluation]


def split_scales(evaluation: int, split: str) -> Tuple[int, ...]:
    """The scales a split keeps under ``stir.evaluation`` (all 48 for 0)."""
    scenario = get_scenario(evaluation)
    return ALL_SCALES if scenario is None else scenario.scales(split)


def scale_filter(evaluation: int, split: str):
    """A Ray Data expression keeping the rows of ``split`` under the scenario, or None (keep all).

    Pass it as ``build_datasets(..., row_filters={name: expr})``.
    """
    from ray.data.expressions import col

    scenario = get_scenario(evaluation)
    if scenario is None:
        return None
    return col(SCALE_COLUMN).is_in(list(scenario.scales(split)))


def row_filters(evaluation: int, splits: Dict[str, Tuple[str, int]]) -> Dict[str, object]:
    """``build_datasets`` row filters for its ``splits`` argument ({name: (split, limit)}).

    Each stream is filtered by the scales of the split it reads (so a "test"
    stream reading split "val" keeps the train/val scales); {} for evaluation 0.
    """
    if get_scenario(evaluation) is None:
        return {}
    return {name: scale_filter(evaluation, split) for name, (split, _) in splits.items()}


def original_train_order(manifest: dict, evaluation: int, split: str = "train") -> np.ndarray:
    """The ``index`` values of ``split``'s scenario rows in the order the original trained on them.

    The original stacks the scenario's scales in ascending order (each scale's
    classes and instances in npz order) and shuffles the stack once with
    ``RandomState(42)`` (data/dataset.py:64-75, siconvnet/data.py:29-51);
    its DataLoader keeps that order every epoch. Evaluation 0 uses all 48 scales, as 4.
    """
    options = manifest["options"]["stir"]
    per_scale = int(manifest["num_classes"]) * int(options["instances"])
    scales = sorted(split_scales(evaluation, split))
    order = np.concatenate([np.arange(per_scale, dtype=np.int64) + (MAX_SCALE - s) * per_scale for s in scales])
    np.random.RandomState(ORIGINAL_SHUFFLE_SEED).shuffle(order)
    return order


def scenario_rows(manifest: dict, split: str, evaluation: int) -> int:
    """Rows of ``split`` that the scenario keeps, from the manifest's per-scale counts."""
    counts = manifest.get("options", {}).get("scale_counts", {}).get(split)
    if counts is None:
        raise ConfigError(
            f"dataset {manifest.get('dataset')!r} has no per-scale counts for split {split!r}: "
            "stir.evaluation needs shards written by `python -m raysys stir generate` or `stir shards`"
        )
    keep = set(split_scales(evaluation, split))
    return sum(int(n) for scale, n in counts.items() if int(scale) in keep)
