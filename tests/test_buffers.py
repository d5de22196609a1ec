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
