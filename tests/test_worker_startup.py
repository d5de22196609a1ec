"""What a fresh Ray Train worker pays before its first batch (``bench train-overhead``)."""
from __future__ import annotations

import subprocess
import sys

from raysys.train import session


def test_discovering_the_families_does_not_import_torchvision():
    # torchvision loads torch._dynamo (seconds); every Ray Train worker discovers every family.
    code = ("import sys, raysys.families as f; f.discover(); "
            "print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_local_ray_runs_its_workers_at_the_drivers_priority(monkeypatch):
    import ray

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    session.ensure_ray(min_cpus=3)
    assert calls[0]["_system_config"]["worker_niceness"] == 0 and calls[0]["num_cpus"] >= 3


def test_prefetch_threads_collate_on_one_thread_and_leave_the_training_threads_alone():
    # In a fresh process: the count is process-wide state torch hands to threads it has not seen yet.
    code = """
import threading, numpy as np, pyarrow as pa, torch
from raysys.data.stream import BatchCollator, ImageFormat
torch.set_num_threads(2)  # as the training and evaluation loops do, then make their collators here
table = pa.table({"image": [bytes(3 * 8 * 8)] * 4, "label": [0, 1, 2, 3], "index": [0, 1, 2, 3]})
collator = BatchCollator(ImageFormat("raw", 8, 8, 3, (0.5,) * 3, (0.5,) * 3), "resnet", 0, 0, 0)
seen = []
def prefetch():
    collator(table)
    seen.append(torch.get_num_threads())
thread = threading.Thread(target=prefetch)
thread.start(); thread.join()  # a prefetch thread first: the default drops to 1 ...
collator(table)  # ... but the thread that made the collator keeps its 2
print(seen[0], torch.get_num_threads())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "2"]
