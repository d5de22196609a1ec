"""Ray Data streaming: Parquet shards -> decoded, augmented, normalised batches.

The driver builds one Ray Dataset per split (:func:`build_datasets`). Ray Train
splits them across workers (:class:`TrainEvalDataConfig`: the train stream in
equal parts so DDP ranks take the same number of steps, the evaluation stream
without padding or dropping so every example is counted exactly once). Each
worker iterates its shard with :func:`iter_batches`, whose collate function
decodes and augments whole batches as tensor operations on Ray Data's
prefetch threads, seeded per batch so a run is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import torch
from ray.data.collate_fn import ArrowBatchCollateFn

from raysys.data.augment import AUGMENTS, normalize, resize
from raysys.data.shards import decode_raw, shard_files
from raysys.errors import DataError

COLUMNS = ["image", "label", "index"]
# Datasets smaller than this are read once and kept in Ray's object store.
CACHE_LIMIT_BYTES = 2 << 30
# Local shuffle buffers aim to hold about this many bytes of images.
SHUFFLE_BUFFER_BYTES = 512 << 20


@dataclass(frozen=True)
class ImageFormat:
    """How the ``image`` column decodes and what the model sees."""

    encoding: str
    height: Optional[int]
    width: Optional[int]
    channels: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    resize: int = 0

    @property
    def output_size(self) -> int:
        return self.resize or int(self.height or 0)

    @property
    def row_bytes(self) -> int:
        if self.encoding == "raw":
            return int(self.height * self.width * self.channels)
        return 110_000  # a typical ImageNet JPEG


def image_format(manifest: dict, mean: Sequence[float], std: Sequence[float], resize_to: int = 0) -> ImageFormat:
    image = manifest["image"]
    if image["encoding"] != "raw" and resize_to <= 0:
        raise DataError(
            f"dataset {manifest['dataset']!r} holds {image['encoding']} images of varying size: "
            "set data.resize to the side length the model should see"
        )
    return ImageFormat(
        image["encoding"], image.get("height"), image.get("width"), int(image["channels"]),
        tuple(mean), tuple(std), int(resize_to),
    )


class BatchCollator(ArrowBatchCollateFn):
    """collate_fn for ``iter_torch_batches``: Arrow rows -> float (N, C, H, W), labels.

    The augmentation of a batch is seeded by (seed, epoch, rank, first row
    index), so it does not depend on which prefetch thread runs it.
    """

    def __init__(self, fmt: ImageFormat, augment: str, seed: int, epoch: int, rank: int):
        super().__init__()
        self.fmt = fmt
        self.augment = AUGMENTS.get(augment)
        self.seed, self.epoch, self.rank = seed, epoch, rank

    def _generator(self, first_index: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, self.epoch, self.rank, first_index]).generate_state(2)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def decode(self, column: pa.ChunkedArray) -> torch.Tensor:
        if self.fmt.encoding != "raw":
            raise DataError(f"decoding {self.fmt.encoding!r} shards is not supported by this stream")
        shape = (self.fmt.height, self.fmt.width, self.fmt.channels)
        pixels = torch.from_numpy(decode_raw(column, shape))
        return pixels.permute(0, 3, 1, 2).float().div_(255.0)

    def __call__(self, batch: pa.Table) -> Dict[str, torch.Tensor]:
        images = resize(self.decode(batch.column("image")), self.fmt.resize)
        index = np.asarray(batch.column("index").to_numpy(), dtype=np.int64)
        generator = self._generator(int(index[0]) if len(index) else 0)
        images = normalize(self.augment(images, generator), self.fmt.mean, self.fmt.std)
        labels = np.asarray(batch.column("label").to_numpy(), dtype=np.int64)
        return {
            "image": images.contiguous(),
            "label": torch.from_numpy(labels.copy()),
            "index": torch.from_numpy(index.copy()),
        }


def split_rows(manifest: dict, split: str, limit: int) -> int:
    count = int(manifest["splits"][split]["count"])
    return min(count, limit) if limit > 0 else count


def shuffle_buffer_rows(fmt: ImageFormat, rows: int, configured: int) -> int:
    """Rows of the local shuffle buffer: configured, or about 512 MiB of images."""
    if configured > 0:
        return min(configured, rows)
    return max(1, min(rows, SHUFFLE_BUFFER_BYTES // max(1, fmt.row_bytes)))


def build_datasets(path: str, manifest: dict, splits: Dict[str, Tuple[str, int]], fmt: ImageFormat, seed: int):
    """{name: ray.data.Dataset} for {name: (split, limit)}, read from the shards.

    Small datasets are materialised once, so each epoch streams from memory.
    """
    import ray.data

    datasets = {}
    for name, (split, limit) in splits.items():
        files = shard_files(path, manifest, split)
        ds = ray.data.read_parquet(files, columns=COLUMNS)
        if name == "train":
            ds = ds.randomize_block_order(seed=seed)
        if limit > 0:
            ds = ds.limit(limit)
        if split_rows(manifest, split, limit) * fmt.row_bytes <= CACHE_LIMIT_BYTES:
            ds = ds.materialize()
        datasets[name] = ds
    return datasets


def _train_eval_data_config_cls():
    from ray.train import DataConfig

    class TrainEvalDataConfig(DataConfig):
        """Split "train" equally across workers; split the rest without padding.

        Ray Train's default splits every dataset with ``equal=True``, which
        may drop rows: right for DDP training steps, wrong for test accuracy.
        """

        def __init__(self, equal_split: Sequence[str] = ("train",)):
            from ray.data import ExecutionOptions

            options = DataConfig.default_ingest_options()
            options.preserve_order = True
            super().__init__(execution_options=options)
            self._equal_split = set(equal_split)

        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
            output: List[dict] = [{} for _ in range(world_size)]
            hints = worker_node_ids if self._enable_shard_locality else None
            for name, ds in datasets.items():
                ds = ds.copy(ds)
                ds.context.execution_options = self._resolve_execution_options(name)
                splits = ds.streaming_split(world_size, equal=name in self._equal_split, locality_hints=hints)
                for rank, split in enumerate(splits):
                    output[rank][name] = split
            return output

    return TrainEvalDataConfig


def train_eval_data_config():
    """The DataConfig raysys trains with (see ``TrainEvalDataConfig``)."""
    return _train_eval_data_config_cls()()


def iter_batches(
    shard,
    collator: BatchCollator,
    batch_size: int,
    *,
    shuffle_rows: int = 0,
    shuffle_seed: Optional[int] = None,
    pin_memory: bool = False,
    device: Optional[torch.device] = None,
) -> Iterator[Dict[str, torch.Tensor]]:
    """One pass over a worker's shard as collated tensor batches on ``device``."""
    return shard.iter_torch_batches(
        batch_size=batch_size,
        collate_fn=collator,
        local_shuffle_buffer_size=shuffle_rows or None,
        local_shuffle_seed=shuffle_seed if shuffle_rows else None,
        pin_memory=pin_memory,
        device=device if device is not None else "auto",
        prefetch_batches=2,
    )
