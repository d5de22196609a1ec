"""Timing with warm-up and repeats; cases run interleaved so the machine's noise hits all alike.

``compare`` runs every case once per round (ABBA order: the order reverses
each round), after ``warmup`` untimed rounds. On CUDA the clock synchronises
the device before it is read.
"""
from __future__ import annotations

import logging
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch

log = logging.getLogger(__name__)
# A case runs once and returns how much work it did (e.g. images), or None.
Case = Callable[[], Optional[float]]


def default_device() -> torch.device:
    """The device a benchmark's in-process work runs on: CUDA when present."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block, restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def now(device: Optional[torch.device] = None) -> float:
    """``time.perf_counter()``, after the CUDA device has finished its queued work."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of ``values`` (0 <= q <= 1)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Stats:
    """Median and spread (interquartile range, min, max) of repeated measurements."""

    values: List[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self) -> Dict[str, float]:
        return {
            "q1": quantile(self.values, 0.25), "q3": quantile(self.values, 0.75),
            "min": min(self.values), "max": max(self.values),
        }

    def to_json(self) -> dict:
        return {"median": self.median, "spread": self.spread(), "n": len(self.values), "values": list(self.values)}


def _children(pid: int) -> List[int]:
    """Live descendants of ``pid`` (Linux /proc; empty elsewhere)."""
    found: List[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as stream:
                found += [int(child) for child in stream.read().split()]
    except OSError:
        return found
    return found + [grandchild for child in found for grandchild in _children(child)]


def _process_cpu(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat, 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live children (e.g. DataLoader workers)."""
    return time.process_time() + sum(_process_cpu(child) for child in _children(os.getpid()))


@dataclass
class Samples:
    """Seconds, CPU seconds and work of each timed run of one case."""

    seconds: List[float] = field(default_factory=list)
    work: List[Optional[float]] = field(default_factory=list)
    cpu: List[float] = field(default_factory=list)

    def time(self) -> Stats:
        return Stats(list(self.seconds))

    def rate(self) -> Stats:
        """Work per second of each run (e.g. images/s)."""
        return Stats([w / s for w, s in zip(self.work, self.seconds)])

    def cpu_per_work(self, scale: float = 1e3) -> Stats:
        """CPU seconds per unit of work, times ``scale`` (default: CPU ms per image)."""
        return Stats([c / w * scale for c, w in zip(self.cpu, self.work)])


def run_once(case: Case, device: Optional[torch.device] = None) -> tuple[float, Optional[float], float]:
    """(wall seconds, work, CPU seconds) of one run of ``case``."""
    cpu, start = cpu_seconds(), now(device)
    work = case()
    return now(device) - start, work, cpu_seconds() - cpu


def compare(
    cases: Dict[str, Case], *, repeats: int, warmup: int = 0, device: Optional[torch.device] = None,
    warmup_cases: Optional[Dict[str, Case]] = None,
) -> Dict[str, Samples]:
    """Time each case ``repeats`` times, interleaved round by round, after ``warmup`` rounds.

    Warm-up rounds run ``warmup_cases`` (e.g. smaller runs) where given, else the cases.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(cases)
    samples = {name: Samples() for name in names}
    for round_number in range(warmup + repeats):
        order = names if round_number % 2 == 0 else names[::-1]
        for name in order:
            warming = round_number < warmup
            case = (warmup_cases or {}).get(name, cases[name]) if warming else cases[name]
            seconds, work, cpu = run_once(case, device)
            if not warming:
                samples[name].seconds.append(seconds)
                samples[name].work.append(work)
                samples[name].cpu.append(cpu)
            stage = "warm-up" if warming else f"repeat {round_number - warmup + 1}/{repeats}"
            log.info("bench %s %s: %.3f s", stage, name, seconds)
    return samples


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> List[float]:
    """Ratio of the two cases' values in each round (they ran back to back)."""
    return [a / b for a, b in zip(numerator, denominator)]
