"""Run one registered benchmark: parameters, scratch folder, machine info, result."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence

from raysys.bench.machine import machine_info
from raysys.bench.registry import BenchContext, load_benchmarks
from raysys.bench.result import BenchResult
from raysys.errors import ConfigError, did_you_mean

# A parameter's default type -> the types an override may have.
_ACCEPTS = {bool: (bool,), int: (int,), float: (int, float), str: (str,), list: (list,)}


def apply_overrides(params: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """``key=value`` overrides (values read as YAML) of a benchmark's parameters."""
    from raysys.config.loader import parse_override

    out = dict(params)
    for item in overrides:
        key, value = parse_override(item)
        if key not in params:
            raise ConfigError(f"unknown benchmark parameter {key!r}{did_you_mean(key, list(params))}")
        expected = type(params[key])
        accepted = _ACCEPTS.get(expected, (expected,))
        if not isinstance(value, accepted) or (expected is not bool and isinstance(value, bool)):
            raise ConfigError(f"bad value {value!r} for benchmark parameter {key!r}: expected {expected.__name__}")
        out[key] = value
    return out


@contextmanager
def scratch(workdir: Optional[str]) -> Iterator[Path]:
    """``workdir`` (created, kept), or a temporary folder removed afterwards."""
    if workdir:
        path = Path(workdir).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="raysys-bench-") as folder:
        yield Path(folder)


def run_benchmark(
    name: str, *, quick: bool = False, overrides: Sequence[str] = (), workdir: Optional[str] = None
) -> BenchResult:
    """Run benchmark ``name`` and return its filled result."""
    bench = load_benchmarks().get(name)
    params = apply_overrides(bench.params(quick), overrides)
    with scratch(workdir) as folder:
        result = BenchResult(bench.name, params, machine_info())
        bench.run(BenchContext(params, folder, result, quick))
    if hasattr(os, "getloadavg"):
        result.machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if quick:
        result.notes.append("--quick: tiny sizes that check the benchmark runs; the figures mean nothing")
    return result
