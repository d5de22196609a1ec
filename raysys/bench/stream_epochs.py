"""One epoch per call over an input pipeline: the raysys stream, or a DataLoader."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch


class StreamEpochs:
    """One Ray Train worker's input, set up as ``raysys train`` sets it up.

    ``build_datasets`` (read + materialise), the ``TrainEvalDataConfig`` split
    for a world of one, then each call iterates one epoch with ``iter_batches``
    and a new ``BatchCollator`` (seeded by epoch), with the local shuffle
    buffer of the default config. Batches stay on the CPU, as a DataLoader's do.
    """

    def __init__(
        self, shards: Path, mean: Sequence[float], std: Sequence[float], *, augment: str, batch_size: int,
        threads: int, resize: int = 0, seed: int = 0, materialize_limit: Optional[int] = None,
    ):
        from raysys.config.schema import DataConfig
        from raysys.data.shards import load_manifest
        from raysys.data.stream import (
            CACHE_LIMIT_BYTES, build_datasets, image_format, shuffle_buffer_rows, split_rows, train_eval_data_config,
        )

        manifest = load_manifest(str(shards))
        self.fmt = image_format(manifest, mean, std, resize)
        limit = CACHE_LIMIT_BYTES if materialize_limit is None else materialize_limit  # 0: stream every epoch
        datasets = build_datasets(str(shards), manifest, {"train": ("train", 0)}, self.fmt, seed, materialize_limit=limit)
        self.materialized = type(datasets["train"]).__name__ == "MaterializedDataset"
        split = train_eval_data_config().configure(datasets, world_size=1, worker_handles=None, worker_node_ids=None)
        self.shard = split[0]["train"]
        self.shuffle_rows = shuffle_buffer_rows(self.fmt, split_rows(manifest, "train", 0), DataConfig().shuffle_buffer)
        self.augment, self.batch_size, self.threads, self.seed = augment, batch_size, threads, seed
        self.epoch = 0

    def batches(self) -> Iterator[dict]:
        """One epoch's batches (the next epoch's on the next call)."""
        from raysys.data.stream import BatchCollator, iter_batches

        collator = BatchCollator(self.fmt, self.augment, self.seed, self.epoch, 0)
        yield from iter_batches(
            self.shard, collator, self.batch_size, shuffle_rows=self.shuffle_rows,
            shuffle_seed=self.seed * 1_000_003 + self.epoch, prefetch_batches=self.threads, device=torch.device("cpu"),
        )
        self.epoch += 1

    def __call__(self) -> int:
        return sum(batch["label"].shape[0] for batch in self.batches())


class LoaderEpochs:
    """Each call iterates a DataLoader once; returns the images seen."""

    def __init__(self, loader):
        self.loader = loader

    def __call__(self) -> int:
        seen = 0
        for _, labels in self.loader:
            seen += labels.shape[0]
        return seen
