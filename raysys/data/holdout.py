"""A validation set held out of the training split (``data.holdout``).

``data.holdout = k > 0`` trains on all but ``k`` rows of the train split and
evaluates on those ``k`` rows instead of the test split. The rows are chosen as
``torch.utils.data.random_split(train, [n - k, k], generator=manual_seed(seed))``
chooses them, so MIMOConv's 45k/5k CIFAR split (seed 42) holds the same images
as the original's. Rows are selected by the shards' ``index`` column.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np
import torch

from raysys.data.stream import split_rows
from raysys.errors import ConfigError


def holdout_indices(rows: int, holdout: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices) of a split of ``rows`` rows, as random_split draws them."""
    if not 0 < holdout < rows:
        raise ConfigError(f"data.holdout={holdout} must be between 1 and the train split's {rows - 1} rows")
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(int(seed))).numpy()
    return order[: rows - holdout], order[rows - holdout:]


@dataclass
class DataSelection:
    """Which split (and rows) each stream reads: the input of ``build_datasets``."""

    splits: Dict[str, Tuple[str, int]]
    train_rows: int
    test_rows: int
    row_filters: Dict[str, object] = field(default_factory=dict)
    # stream -> its rows' ``index`` values in the one order it reads every epoch (no shuffle; e.g. STIR's stir.shuffle=once)
    row_orders: Dict[str, np.ndarray] = field(default_factory=dict)


def _index_in(indices: np.ndarray):
    from ray.data.expressions import col

    return col("index").is_in(sorted(int(i) for i in indices))


def select(cfg, manifest: dict) -> DataSelection:
    """Train on ``data.train_split`` and test on ``data.test_split``, or on a held-out part of train."""
    data = cfg.data
    holdout = int(data.get("holdout", 0) or 0)
    if holdout <= 0:
        return DataSelection(
            {"train": (data.train_split, data.limit), "test": (data.test_split, data.test_limit)},
            split_rows(manifest, data.train_split, data.limit),
            split_rows(manifest, data.test_split, data.test_limit),
        )
    rows = split_rows(manifest, data.train_split, 0)
    train, held = holdout_indices(rows, holdout, int(data.holdout_seed))
    limit = lambda n, cap: min(n, cap) if cap > 0 else n  # noqa: E731
    return DataSelection(
        {"train": (data.train_split, data.limit), "test": (data.train_split, data.test_limit)},
        limit(len(train), data.limit), limit(len(held), data.test_limit),
        {"train": _index_in(train), "test": _index_in(held)},
    )

