"""The machine a benchmark ran on: cores, memory, torch threads, device, versions, load."""
from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from typing import Any, Dict

import torch


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return 0.0


def device_name() -> str:
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)} x{torch.cuda.device_count()})"
    return "cpu"


def machine_info() -> Dict[str, Any]:
    """What the figures depend on; the load average says how busy the machine was."""
    import ray

    try:
        import torchvision

        vision = torchvision.__version__
    except ImportError:
        vision = "-"
    cores = os.cpu_count() or 1
    return {
        "date": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "cores": cores,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores,
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "torch_threads": torch.get_num_threads(),
        "device": device_name(),
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, torchvision {vision}, ray {ray.__version__}",
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else [],
    }
