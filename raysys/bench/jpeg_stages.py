"""Where the JPEG stream's CPU goes per image: each step of its collate, timed apart on one thread.

The steps of ``BatchCollator`` for ``train.augment=imagenet`` on JPEG shards
(:func:`raysys.data.jpeg.decode_batch`: the header, the crop window, decoding
that window (:mod:`raysys.data.jpeg_window`, or the whole image where it is
off), the resize; the ``imagenet`` augmentation,
:func:`raysys.data.augment.to_normalized_float`), run as they run there and
timed with ``time.thread_time`` (this thread's user + system CPU, so page
faults count). The batch built this way is the collator's, bit for bit
(tests/test_jpeg.py), so the figures are the cost of that work and nothing else.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Dict, List, Sequence

import pyarrow as pa
import torch

STAGES = ("bytes", "header", "crop window", "decode", "resize", "stack", "flip", "normalize")


class CollateStages:
    """One pass per call over ``batches`` (Arrow tables with an ``image`` column) at ``size``.

    ``cpu_ms`` maps each stage to its CPU ms per image, one value per pass.
    """

    def __init__(self, batches: Sequence[pa.Table], size: int, mean: Sequence[float], std: Sequence[float]):
        self.batches, self.size, self.mean, self.std = list(batches), size, tuple(mean), tuple(std)
        self.cpu_ms: Dict[str, List[float]] = {stage: [] for stage in STAGES}

    def batch(self, table: pa.Table, generator: torch.Generator, seconds: Dict[str, float]) -> torch.Tensor:
        """The collated images of ``table``; each stage's thread CPU seconds are added to ``seconds``."""
        from raysys.data import jpeg, jpeg_window
        from raysys.data.augment import AUGMENTS, to_normalized_float

        def timed(stage, fn, *args):
            start = time.thread_time()
            out = fn(*args)
            seconds[stage] += time.thread_time() - start
            return out

        policy = jpeg.CROPS.get("random-resized")
        images = []
        for blob in timed("bytes", jpeg.encoded_tensors, table.column("image")):
            dims = timed("header", jpeg_window.header, blob)
            if dims is None:  # decoded whole (jpeg.crop_pixels's fallback)
                image = timed("decode", lambda: jpeg.decode_tensors([blob])[0])
                window = timed("crop window", policy.window, image.shape[-2], image.shape[-1], self.size, generator).cut(image)
            else:
                box = timed("crop window", policy.window, *dims, self.size, generator)
                window = timed("decode", jpeg.decode_window, blob, box, *dims)
            images.append(timed("resize", policy.finish, window, self.size))
        pixels = timed("stack", torch.stack, images)
        pixels = timed("flip", AUGMENTS.get("imagenet"), pixels, generator)
        return timed("normalize", to_normalized_float, pixels, self.mean, self.std)

    def __call__(self) -> int:
        seconds: Dict[str, float] = defaultdict(float)
        images = 0
        for number, table in enumerate(self.batches):
            self.batch(table, torch.Generator().manual_seed(number), seconds)
            images += table.num_rows
        for stage in STAGES:
            self.cpu_ms[stage].append(seconds[stage] * 1e3 / max(1, images))
        return images
