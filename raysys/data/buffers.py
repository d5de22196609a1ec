"""Batch tensors on transparent huge pages, where the kernel offers them, and a pool that reuses them.

A collated batch is memory written once: 64 float images at 224 px are 38 MB,
which malloc maps fresh for every batch. Its first touch then faults in 9,400
pages of 4 KiB, about 0.25 ms of kernel time per image: more than converting
and normalising the pixels (docs/BENCHMARKS.md, the JPEG section). Advised
with ``MADV_HUGEPAGE``, the kernel maps 2 MiB pages instead: 13x fewer faults
(the ends of the buffer, not 2 MiB-aligned, stay on small pages). A hint only: on
other systems, or with transparent huge pages off, the tensor is an ordinary one,
and the values never depend on it.
"""
from __future__ import annotations

import ctypes
import functools
import math
import mmap
import sys
import threading
from typing import List, Optional, Sequence

import numpy as np
import torch

MADV_HUGEPAGE = 14  # <sys/mman.h>, Linux
# Below this at most one whole 2 MiB page fits inside the tensor: little to gain.
MIN_HINT_BYTES = 4 << 20


@functools.lru_cache(maxsize=None)
def _madvise():
    """libc's ``madvise``, or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def advise_huge_pages(tensor: torch.Tensor) -> None:
    """Ask for huge pages under the whole memory pages of ``tensor``'s storage (CPU; else nothing)."""
    madvise = _madvise()
    storage = tensor.untyped_storage()
    if madvise is None or tensor.device.type != "cpu" or storage.nbytes() < MIN_HINT_BYTES:
        return
    first = storage.data_ptr()
    start = -(-first // mmap.PAGESIZE) * mmap.PAGESIZE  # only pages wholly inside the storage
    end = (first + storage.nbytes()) // mmap.PAGESIZE * mmap.PAGESIZE
    madvise(start, end - start, MADV_HUGEPAGE)  # a failure (EINVAL: THP off) changes nothing


def empty_batch(
    shape: Sequence[int], dtype: torch.dtype, *, device: Optional[torch.device] = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """``torch.empty``, advised onto huge pages before anything touches it (CPU tensors)."""
    tensor = torch.empty(tuple(shape), dtype=dtype, device=device, memory_format=memory_format)
    advise_huge_pages(tensor)
    return tensor


def _free_count() -> int:
    """What ``sys.getrefcount`` says of a pooled buffer nothing else holds, seen from :meth:`BatchPool.empty`'s loop."""
    buffers = [np.empty(1, np.uint8)]
    for buffer in buffers:
        count = sys.getrefcount(buffer)
    return count


class BatchPool:
    """Batch tensors whose memory is handed out again once nothing can read the batch any more.

    A batch is a tensor over a pooled NumPy buffer (``torch.frombuffer``). Every
    tensor, view, storage, NumPy array or DLPack capsule made from it keeps that
    buffer referenced, so the buffer's reference count says exactly when the batch
    is gone everywhere; only then is its memory reused. Reused memory is already
    mapped: no page faults and no kernel zeroing per batch (a fresh 38 MB batch
    costs both; docs/BENCHMARKS.md). At most ``max_bytes`` of buffers are kept;
    beyond that, and below :data:`MIN_HINT_BYTES`, batches are fresh (:func:`empty_batch`).
    """

    def __init__(self, max_bytes: int = 512 << 20):
        self.max_bytes = max_bytes
        self._buffers: List[np.ndarray] = []
        self._lock = threading.Lock()
        self._free = _free_count()

    def empty(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised contiguous CPU tensor of ``shape`` and ``dtype``."""
        nbytes = math.prod(shape) * dtype.itemsize
        with self._lock:
            for buffer in self._buffers:
                if buffer.nbytes == nbytes and sys.getrefcount(buffer) == self._free:
                    return self._tensor(buffer, shape, dtype)
            if nbytes < MIN_HINT_BYTES or self.kept_bytes() + nbytes > self.max_bytes:
                return empty_batch(shape, dtype)
            buffer = empty_batch((nbytes,), torch.uint8).numpy()
            self._buffers.append(buffer)
            return self._tensor(buffer, shape, dtype)

    def kept_bytes(self) -> int:
        return sum(buffer.nbytes for buffer in self._buffers)

    @staticmethod
    def _tensor(buffer: np.ndarray, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        return torch.frombuffer(buffer, dtype=dtype).view(tuple(shape))


# The collated float batches of this process (raysys.data.augment.to_normalized_float).
BATCHES = BatchPool()
