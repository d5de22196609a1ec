"""The benchmark registry: ``@register_benchmark(name, full=..., quick=...)`` on one function."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping

from raysys.bench.result import BenchResult
from raysys.registry import Registry


@dataclass
class BenchContext:
    """What a benchmark run gets: parameters, a scratch folder, and the result to fill."""

    params: Dict[str, Any]
    workdir: Path
    result: BenchResult
    quick: bool = False

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: ``run(ctx) -> BenchResult`` and its parameter sets."""

    name: str
    run: Callable[[BenchContext], None]
    help: str
    full: Mapping[str, Any] = field(default_factory=dict)
    quick: Mapping[str, Any] = field(default_factory=dict)

    def params(self, quick: bool) -> Dict[str, Any]:
        """The full-size parameters, with the quick ones on top when ``quick``."""
        return {**self.full, **(self.quick if quick else {})}


BENCHMARKS: Registry[Benchmark] = Registry("benchmark", discover=False)


def register_benchmark(name: str, *, help: str, full: Mapping[str, Any], quick: Mapping[str, Any] = ()):
    """Register ``fn(ctx: BenchContext)``, which fills ``ctx.result``.

    ``full`` names every parameter with its default; ``quick`` overrides some
    of them for ``--quick`` (tiny sizes that check the benchmark runs).
    """

    def add(fn: Callable[[BenchContext], None]):
        unknown = set(dict(quick)) - set(full)
        if unknown:
            raise ValueError(f"benchmark {name!r}: quick parameters {sorted(unknown)} are not in full")
        BENCHMARKS.add(name, Benchmark(name, fn, help, dict(full), dict(quick)))
        return fn

    return add


def load_benchmarks() -> Registry[Benchmark]:
    """Import every module of this package: benchmark modules register themselves.

    Support modules register nothing and import heavy libraries lazily.
    """
    import raysys.bench

    for module in pkgutil.iter_modules(raysys.bench.__path__):
        importlib.import_module(f"raysys.bench.{module.name}")
    return BENCHMARKS
