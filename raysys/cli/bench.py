"""``python -m raysys bench <name> [--json]``: one harness for every benchmark."""
from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager

from raysys.cli.registry import command, lazy_epilog


@contextmanager
def _stdout_to_stderr(active: bool):
    """Send everything written to stdout (Ray's worker logs too) to stderr, so --json stays one object."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@command("bench", help="Run a benchmark: timed with warm-up and repeats, compared side by side as ratios.", examples=(
    'raysys bench',
    'raysys bench data --quick --json',
    'raysys bench train-overhead --set repeats=3',
))
def bench_command(parser: argparse.ArgumentParser):
    lazy_epilog(parser, _listing)  # the benchmarks import torch: listed only when --help is shown
    parser.add_argument("name", nargs="?", help="benchmark name; omit to list them")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs, the figures mean nothing")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set repeats=3 (see the listing)")
    parser.add_argument("--workdir", help="keep the generated data here (default: a temporary folder)")

    def run(args: argparse.Namespace) -> int:
        from raysys.console import phase

        phase(f"bench {args.name}: loading the benchmarks" if args.name else "loading the benchmarks")
        from raysys.bench.registry import load_benchmarks
        from raysys.bench.runner import run_benchmark

        if not args.name:
            print(_listing())
            return 0
        load_benchmarks().canonical(args.name)  # an unknown name fails here, with suggestions
        phase(f"bench {args.name}: running" + (" (--quick)" if args.quick else ""))
        with _stdout_to_stderr(args.json):
            result = run_benchmark(args.name, quick=args.quick, overrides=args.overrides, workdir=args.workdir)
        print(json.dumps(result.to_json()) if args.json else result.format_text())
        return 0

    return run


def _listing() -> str:
    """The benchmarks and their full-size parameters."""
    from raysys.bench.registry import load_benchmarks

    lines = ["benchmarks:"]
    for name, bench in load_benchmarks().items():
        params = " ".join(f"{k}={v}" for k, v in bench.full.items())
        lines.append(f"  {name}: {bench.help}")
        lines.append(f"      {params}")
    return "\n".join(lines)
