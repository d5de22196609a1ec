"""Fresh batch tensors on transparent huge pages, where the kernel offers them.

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
import mmap
import sys
from typing import Optional, Sequence

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
