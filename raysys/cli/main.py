"""``raysys <command>`` (also ``python -m raysys``): one entry point; errors print as one line.

Nothing heavy is imported before a command's handler runs: torch, Ray and MLflow
load inside it, after its first phase line (:mod:`raysys.console`).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from typing import List, Optional

import raysys
from raysys.cli.registry import COMMANDS, examples_epilog
from raysys.console import rayout, set_verbose
from raysys.errors import RaysysError, Terminated


def _import_command_modules() -> None:
    """Every module in raysys/cli registers its subcommands on import."""
    import raysys.cli

    for module in pkgutil.iter_modules(raysys.cli.__path__):
        if module.name not in ("main", "registry"):
            importlib.import_module(f"raysys.cli.{module.name}")


def build_parser() -> argparse.ArgumentParser:
    _import_command_modules()

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show Ray's, Ray Data's and Ray Train's own output (default: kept in a log file)")
    parser = argparse.ArgumentParser(
        prog="raysys", description="Structured-convolution experiments on Ray.", parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=examples_epilog(["raysys presets", "raysys train cifar-resnet/fashion-mnist-resnet20 train.epochs=2",
                                "raysys <command> --help"]),
    )
    parser.add_argument("--version", action="version", version=f"raysys {raysys.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name, spec in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=spec.help, description=spec.help, parents=[common],
                                    formatter_class=argparse.RawDescriptionHelpFormatter,
                                    epilog=examples_epilog(spec.examples))
        sub_parser.set_defaults(handler=spec.setup(sub_parser))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from raysys.track.quiet import install_redaction

    install_redaction()  # no credential in anything this process prints
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    # argparse stops filling a trailing positional list at the first option, so
    # `report NAME --out DIR seeds=0-1` leaves the overrides over: take them back.
    overrides = [a for a in extras if "=" in a and not a.startswith("-")]
    if hasattr(args, "overrides") and overrides == extras:
        args.overrides = [*args.overrides, *overrides]
    elif extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    if getattr(args, "verbose", False):
        set_verbose(True)
    rayout.prepare(args.command)  # Ray's switches, before anything imports Ray
    try:
        code = int(args.handler(args) or 0)
        stop_ray_output()  # the command's last line is out
        return code
    except RaysysError as exc:
        stop_ray_output()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        stop_ray_output()
        print("error: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        stop_ray_output()
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return int(exc.code)


def stop_ray_output() -> None:
    """Nothing may print after the final ``error:`` line: Ray forwards worker output until told not to."""
    rayout.finish()  # Ray's output still held goes to its log file; no notice from now on
    if "ray" in sys.modules:
        from raysys.train.session import mute_ray_console

        mute_ray_console()
    if "tqdm" in sys.modules:  # Ray Data's bars, drawn on the driver, would print again when closed at exit
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()
    sys.stdout.flush()
    sys.stderr.flush()


def run_and_exit(argv: Optional[List[str]] = None) -> None:
    """The command line's entry: :func:`main`, then exit with nothing printed after its last line.

    Ray's shutdown at exit (and C++ parts of it, straight to the file descriptors)
    may still print; the last line the user sees is raysys's JSON line or ``error:``.
    """
    try:
        code = main(argv)
    except BrokenPipeError:  # `raysys presets | head`: the reader left; no traceback
        code = 141
    exit_silently(code)


EXIT_WAIT_S = 1.0  # the exit handlers' time (Ray's shutdown of a local Ray) before the process ends anyway


def exit_silently(code: int) -> None:
    """Exit with ``code`` within :data:`EXIT_WAIT_S`; whatever Ray prints while shutting down goes nowhere.

    The exit handlers (``ray.shutdown`` among them) run in a thread given that long:
    stopping a local Ray can take many seconds on a loaded machine, and its processes
    (GCS, raylet, workers) end with this one anyway (Ray's fate sharing on Linux).
    """
    import atexit
    import threading

    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    handlers = threading.Thread(target=atexit._run_exitfuncs, name="raysys-exit", daemon=True)
    handlers.start()
    handlers.join(EXIT_WAIT_S)
    os._exit(code)
