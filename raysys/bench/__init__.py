"""``python -m raysys bench <name>``: benchmarks timed side by side, reported as ratios.

A benchmark is one module in this package with one ``@register_benchmark``
function; :func:`load_benchmarks` imports them all.
"""
from raysys.bench.registry import BENCHMARKS, BenchContext, Benchmark, load_benchmarks, register_benchmark

__all__ = ["BENCHMARKS", "BenchContext", "Benchmark", "load_benchmarks", "register_benchmark"]
