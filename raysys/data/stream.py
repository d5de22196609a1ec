"""Ray Data streaming: Parquet shards -> decoded, augmented, normalised batches.

The driver builds one Ray Dataset per split (:func:`build_datasets`). Ray Train
splits them across workers (:class:`TrainEvalDataConfig`: the train stream in
equal parts so DDP ranks take the same number of steps, the evaluation stream
without padding or dropping so every example is counted exactly once). Each
worker iterates its shard with :func:`iter_batches`, whose collate function
decodes and augments whole batches as tensor operations on Ray Data's
prefetch threads, seeded per batch so a run is reproducible: pixels stay uint8
through decoding and augmentation and become normalised floats in one step.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import torch
from ray.data.collate_fn import ArrowBatchCollateFn

from raysys.data import jpeg
from raysys.data.augment import AUGMENTS, resize, to_normalized_float
from raysys.data.shards import decode_raw, shard_files
from raysys.errors import DataError
from raysys.registry import Registry

COLUMNS = ["image", "label", "index"]
ORDER_COLUMN = "__fixed_order"  # in_fixed_order's sort key, dropped after sorting
# Datasets smaller than this are read once and kept in Ray's object store
# (the default of data.materialize_limit_gb; see materialize_limit_bytes).
CACHE_LIMIT_BYTES = 2 << 30
# Local shuffle buffers aim to hold about this many bytes of images.
SHUFFLE_BUFFER_BYTES = 512 << 20
# Batches collated ahead of the training loop; Ray Data collates on this many threads (at most 4).
PREFETCH_BATCHES = 2


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
    # JPEG decoding options (data.jpeg_draft, data.jpeg_device; raysys/data/jpeg.py).
    jpeg_draft: bool = False
    jpeg_device: str = "cpu"

    @property
    def output_size(self) -> int:
        return self.resize or int(self.height or 0)

    @property
    def row_bytes(self) -> int:
        if self.encoding == "raw":
            return int(self.height * self.width * self.channels)
        return 110_000  # a typical ImageNet JPEG


def image_format(
    manifest: dict, mean: Sequence[float], std: Sequence[float], resize_to: int = 0,
    *, jpeg_draft: bool = False, jpeg_device: str = "cpu",
) -> ImageFormat:
    image = manifest["image"]
    jpeg.check_options(bool(jpeg_draft), str(jpeg_device))
    if image["encoding"] != "raw" and resize_to <= 0:
        raise DataError(
            f"dataset {manifest['dataset']!r} holds {image['encoding']} images of varying size: "
            "set data.resize to the side length the model should see"
        )
    return ImageFormat(
        image["encoding"], image.get("height"), image.get("width"), int(image["channels"]),
        tuple(mean), tuple(std), int(resize_to), bool(jpeg_draft), str(jpeg_device),
    )


# encoding -> decode(column, fmt, crop, generator): uint8 (N, C, H, W) at the model's size.
Decoder = Callable[[pa.ChunkedArray, ImageFormat, str, torch.Generator], torch.Tensor]
DECODERS: Registry[Decoder] = Registry("image encoding")


@DECODERS.register("raw")
def decode_raw_batch(column: pa.ChunkedArray, fmt: ImageFormat, crop: str, generator: torch.Generator) -> torch.Tensor:
    """Raw pixel rows -> uint8 (N, C, H, W), resized to ``fmt.resize`` if set."""
    pixels = torch.from_numpy(decode_raw(column, (fmt.height, fmt.width, fmt.channels)))
    return resize(pixels.permute(0, 3, 1, 2).contiguous(), fmt.resize)


@DECODERS.register("jpeg")
def decode_jpeg_batch(column: pa.ChunkedArray, fmt: ImageFormat, crop: str, generator: torch.Generator) -> torch.Tensor:
    """JPEG bytes -> uint8 (N, 3, S, S), each image squared by the augmentation's crop."""
    return jpeg.decode_batch(column, fmt.output_size, crop, generator, draft=fmt.jpeg_draft, device=fmt.jpeg_device)


_prefetch_thread = threading.local()


def _one_intra_op_thread() -> None:
    """Run this thread's tensor ops on one OpenMP thread (once per thread).

    A prefetch thread shares the worker's cores with the training step's
    OpenMP team; with a team of its own per thread (torch's default), the
    spinning teams cost the step 15-20 % on 2 cores (docs/BENCHMARKS.md,
    ``bench train-overhead``), as DataLoader worker processes avoid with one
    thread each. Sets torch's default for threads started later too; the
    thread that made the collator fixed its own count on construction.
    """
    if not getattr(_prefetch_thread, "single", False):
        torch.set_num_threads(1)
        _prefetch_thread.single = True


class BatchCollator(ArrowBatchCollateFn):
    """collate_fn for ``iter_torch_batches``: Arrow rows -> float (N, C, H, W), labels.

    Decoding and augmentation run on uint8 pixels; the batch becomes
    normalised float32 last. The augmentation of a batch is seeded by (seed,
    epoch, rank, first row index), so it does not depend on which prefetch
    thread runs it. On a prefetch thread (any thread but the one that made
    the collator) the batch's tensor ops run on one OpenMP thread.
    """

    def __init__(
        self, fmt: ImageFormat, augment: str, seed: int, epoch: int, rank: int,
        extra_columns: Sequence[str] = (),
    ):
        super().__init__()
        # Extra int64 columns (e.g. STIR's "scale") returned as tensors beside label and index.
        self.extra_columns = tuple(extra_columns)
        if fmt.encoding not in DECODERS:
            raise DataError(f"decoding {fmt.encoding!r} shards is not supported by this stream")
        self.fmt = fmt
        self.decoder = DECODERS.get(fmt.encoding)
        self.augment = AUGMENTS.get(augment)
        self.crop = getattr(self.augment, "square_crop", "center")
        # An augmentation marked before_resize (raysys/data/augment.py) sees raw images at their stored size.
        early = getattr(self.augment, "before_resize", False) and fmt.encoding == "raw" and fmt.resize > 0
        self.decode_fmt = dataclasses.replace(fmt, resize=0) if early else fmt
        self.seed, self.epoch, self.rank = seed, epoch, rank
        self._owner = threading.get_ident()
        # Fixes the consuming thread's torch thread count before a prefetch thread lowers the default.
        torch.get_num_threads()

    def _generator(self, first_index: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, self.epoch, self.rank, first_index]).generate_state(2)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def __call__(self, batch: pa.Table) -> Dict[str, torch.Tensor]:
        if threading.get_ident() != self._owner:
            _one_intra_op_thread()
        index = np.asarray(batch.column("index").to_numpy(), dtype=np.int64)
        generator = self._generator(int(index[0]) if len(index) else 0)
        pixels = self.decoder(batch.column("image"), self.decode_fmt, self.crop, generator)
        pixels = resize(self.augment(pixels, generator), self.fmt.resize)
        images = to_normalized_float(pixels, self.fmt.mean, self.fmt.std)
        labels = np.asarray(batch.column("label").to_numpy(), dtype=np.int64)
        out = {
            "image": images,
            "label": torch.from_numpy(labels.copy()),
            "index": torch.from_numpy(index.copy()),
        }
        for name in self.extra_columns:
            out[name] = torch.from_numpy(np.asarray(batch.column(name).to_numpy(), dtype=np.int64).copy())
        return out


def split_rows(manifest: dict, split: str, limit: int) -> int:
    count = int(manifest["splits"][split]["count"])
    return min(count, limit) if limit > 0 else count


def shuffle_buffer_rows(fmt: ImageFormat, rows: int, configured: int) -> int:
    """Rows of the local shuffle buffer: configured, or about 512 MiB of images."""
    if configured > 0:
        return min(configured, rows)
    return max(1, min(rows, SHUFFLE_BUFFER_BYTES // max(1, fmt.row_bytes)))


def build_datasets(
    path: str, manifest: dict, splits: Dict[str, Tuple[str, int]], fmt: ImageFormat, seed: int,
    *, row_filters: Optional[Dict[str, object]] = None, extra_columns: Sequence[str] = (),
    row_orders: Optional[Dict[str, np.ndarray]] = None, materialize_limit: int = CACHE_LIMIT_BYTES,
):
    """{name: ray.data.Dataset} for {name: (split, limit)}, read from the shards.

    Datasets of at most ``materialize_limit`` decoded bytes (``data.materialize_limit_gb``,
    :func:`materialize_limit_bytes`) are materialised once, so each epoch streams from
    memory; larger ones are read from the shards again every epoch (0: always).
    ``row_filters`` maps a name to a Ray Data expression keeping only matching
    rows (e.g. a STIR scenario's scales, :mod:`raysys.families.stir.scenarios`);
    ``extra_columns`` (e.g. "scale") are read beside ``COLUMNS`` so a
    :class:`BatchCollator` with the same ``extra_columns`` can return them.
    ``row_orders`` maps a name to ``index`` values: that stream reads its rows
    in this fixed order (:func:`in_fixed_order`; the trainer then skips the local shuffle).
    """
    import ray.data

    columns = COLUMNS + [name for name in extra_columns if name not in COLUMNS]
    datasets = {}
    for name, (split, limit) in splits.items():
        files = shard_files(path, manifest, split)
        ds = ray.data.read_parquet(files, columns=columns)
        row_filter = (row_filters or {}).get(name)
        if row_filter is not None:
            ds = ds.filter(expr=row_filter)
        order = (row_orders or {}).get(name)
        if order is not None:
            ds = in_fixed_order(ds, order)
        elif name == "train":
            ds = ds.randomize_block_order(seed=seed)
        if limit > 0:
            ds = ds.limit(limit)
        if should_materialize(split_rows(manifest, split, limit), fmt, materialize_limit):
            ds = ds.materialize()
        datasets[name] = ds
    return datasets


def materialize_limit_bytes(data_cfg) -> int:
    """``data.materialize_limit_gb`` in bytes (a config without the key: the 2 GiB default)."""
    gib = getattr(data_cfg, "materialize_limit_gb", None)
    return CACHE_LIMIT_BYTES if gib is None else int(float(gib) * (1 << 30))


def should_materialize(rows: int, fmt: ImageFormat, limit_bytes: int) -> bool:
    """Whether a stream of ``rows`` rows is read once into the object store (else: from the shards every epoch)."""
    return limit_bytes > 0 and rows * fmt.row_bytes <= limit_bytes


def in_fixed_order(ds, order: np.ndarray):
    """``ds`` sorted so that its rows come in ``order`` (their ``index`` values); rows not in it are dropped."""
    rank = np.full(int(np.max(order)) + 1, -1, np.int64)
    rank[np.asarray(order, np.int64)] = np.arange(len(order))

    def add_rank(batch: pa.Table) -> pa.Table:
        index = batch.column("index").to_numpy()
        ranks = np.where(index < len(rank), rank[np.minimum(index, len(rank) - 1)], -1)
        return batch.append_column(ORDER_COLUMN, pa.array(ranks))

    ranked = ds.map_batches(add_rank, batch_format="pyarrow").filter(expr=_col(ORDER_COLUMN) >= 0)
    return ranked.sort(ORDER_COLUMN).drop_columns([ORDER_COLUMN])


def _col(name: str):
    from ray.data.expressions import col

    return col(name)


def _split_in_memory(ds, world_size: int, equal: bool, options) -> list:
    """Iterators over a materialised dataset's blocks, split once across the workers.

    ``streaming_split`` would start a coordinator actor per dataset and a new
    streaming execution every epoch (about 1.5 s of a small run's first epoch);
    the blocks are in the object store already, so each worker just reads its share.
    Unequal splits (evaluation) cut at even row counts, not at block boundaries,
    so a one-block test split does not land on one worker.
    """
    if equal or world_size == 1:
        parts = ds.split(world_size, equal=equal)
    else:
        rows = ds.count()
        parts = ds.split_at_indices([rows * rank // world_size for rank in range(1, world_size)])
    for part in parts:
        part.context.execution_options = options
    return [part.iterator() for part in parts]


def _train_eval_data_config_cls():
    from ray.data.dataset import MaterializedDataset
    from ray.train import DataConfig

    class TrainEvalDataConfig(DataConfig):
        """Split "train" equally across workers; split the rest without padding.

        Ray Train's default splits every dataset with ``equal=True``, which
        may drop rows: right for DDP training steps, wrong for test accuracy.
        Materialised (small) datasets are split once in memory; others stream.
        """

        def __init__(self, equal_split: Sequence[str] = ("train",)):
            options = DataConfig.default_ingest_options()
            options.preserve_order = True
            super().__init__(execution_options=options)
            self._equal_split = set(equal_split)

        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
            output: List[dict] = [{} for _ in range(world_size)]
            for name, ds in datasets.items():
                equal = name in self._equal_split
                options = self._resolve_execution_options(name)
                if isinstance(ds, MaterializedDataset):
                    splits = _split_in_memory(ds, world_size, equal, options)
                else:
                    hints = worker_node_ids if self._enable_shard_locality else None
                    ds = ds.copy(ds)
                    ds.context.execution_options = options
                    splits = ds.streaming_split(world_size, equal=equal, locality_hints=hints)
                for rank, split in enumerate(splits):
                    output[rank][name] = split
            return output

    return TrainEvalDataConfig


def train_eval_data_config(equal_split: Sequence[str] = ("train",)):
    """The DataConfig raysys trains with (see ``TrainEvalDataConfig``): ``equal_split`` names the train streams
    (a pack of runs has one per run, raysys/train/pack.py)."""
    return _train_eval_data_config_cls()(tuple(equal_split))


def iter_batches(
    shard,
    collator: BatchCollator,
    batch_size: int,
    *,
    shuffle_rows: int = 0,
    shuffle_seed: Optional[int] = None,
    pin_memory: bool = False,
    device: Optional[torch.device] = None,
    prefetch_batches: int = PREFETCH_BATCHES,
) -> Iterator[Dict[str, torch.Tensor]]:
    """One pass over a worker's shard as collated tensor batches on ``device``."""
    return shard.iter_torch_batches(
        batch_size=batch_size,
        collate_fn=collator,
        local_shuffle_buffer_size=shuffle_rows or None,
        local_shuffle_seed=shuffle_seed if shuffle_rows else None,
        pin_memory=pin_memory,
        device=device if device is not None else "auto",
        prefetch_batches=prefetch_batches,
    )
