"""Fresh batch tensors advised onto transparent huge pages (raysys.data.buffers)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from raysys.data.buffers import MIN_HINT_BYTES, advise_huge_pages, empty_batch

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def vm_flags(address: int) -> list:
    """The VmFlags of the mapping of this process that holds ``address``."""
    flags, inside = [], False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            low, high = (int(part, 16) for part in head.split("-"))
            inside = low <= address < high
        elif inside and head == "VmFlags:":
            flags = line.split()[1:]
    return flags


def test_empty_batch_is_an_ordinary_tensor():
    batch = empty_batch((4, 3, 224, 224), torch.uint8, memory_format=torch.channels_last)
    assert batch.shape == (4, 3, 224, 224) and batch.dtype == torch.uint8
    assert batch.is_contiguous(memory_format=torch.channels_last)
    small = empty_batch((2, 3, 8, 8), torch.float32)  # under MIN_HINT_BYTES: not advised
    assert small.is_contiguous() and small.numel() * 4 < MIN_HINT_BYTES
    advise_huge_pages(small)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not THP.exists() or "[never]" in THP.read_text(),
                    reason="needs Linux with transparent huge pages")
def test_a_large_batch_is_advised_onto_huge_pages():
    batch = empty_batch((64, 3, 224, 224), torch.float32)
    middle = batch.data_ptr() + batch.numel() * 2  # inside the advised range, whatever the alignment
    assert "hg" in vm_flags(middle)
    batch.fill_(1.5)
    assert bool((batch == 1.5).all())


def test_the_pool_reuses_a_batch_only_once_nothing_holds_it():
    import numpy as np
    import torch.utils.dlpack

    from raysys.data.buffers import BatchPool

    pool = BatchPool(max_bytes=64 << 20)
    shape = (8, 3, 224, 224)  # 4.8 MB: pooled
    first = pool.empty(shape, torch.float32)
    address = first.data_ptr()
    assert first.shape == shape and first.is_contiguous() and first.dtype == torch.float32
    first.fill_(1.0)
    held = [first[2:], first.numpy(), first.untyped_storage(), torch.utils.dlpack.to_dlpack(first)]
    del first
    for keeper in held:  # a view, a NumPy array, the storage, a DLPack capsule: each keeps it in use
        others = [pool.empty(shape, torch.float32) for _ in range(2)]
        assert address not in {other.data_ptr() for other in others}
        del others
        if isinstance(keeper, torch.Tensor):
            assert bool((keeper == 1.0).all())
    del held, keeper
    again = pool.empty(shape, torch.float32)
    assert again.data_ptr() == address  # now nothing holds it
    assert pool.kept_bytes() == 3 * again.numel() * 4  # the first batch and the two made meanwhile


def test_the_pool_keeps_at_most_max_bytes_and_small_batches_are_fresh():
    from raysys.data.buffers import BatchPool

    pool = BatchPool(max_bytes=12 << 20)
    small = [pool.empty((2, 3, 224, 224), torch.float32) for _ in range(3)]  # 1.2 MB each, under MIN_HINT_BYTES
    assert pool.kept_bytes() == 0 and len({b.data_ptr() for b in small}) == 3
    large = [pool.empty((8, 3, 224, 224), torch.float32) for _ in range(4)]  # 4.8 MB each: two fit in 12 MB
    assert pool.kept_bytes() == 2 * 8 * 3 * 224 * 224 * 4 and len({b.data_ptr() for b in large}) == 4
    pooled = {batch.data_ptr() for batch in large[:2]}
    del large
    uint8 = pool.empty((32, 3, 224, 224), torch.uint8)  # the same bytes as a float batch of 8: a free buffer
    assert uint8.dtype == torch.uint8 and uint8.shape == (32, 3, 224, 224) and uint8.data_ptr() in pooled
