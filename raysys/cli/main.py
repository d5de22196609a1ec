"""``python -m raysys <command>``: one entry point; errors print as one line."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from typing import List, Optional

from raysys.cli.registry import COMMANDS
from raysys.errors import RaysysError, Terminated


def _import_command_modules() -> None:
    """Every module in raysys/cli registers its subcommands on import."""
    import raysys.cli

    for module in pkgutil.iter_modules(raysys.cli.__path__):
        if module.name not in ("main", "registry"):
            importlib.import_module(f"raysys.cli.{module.name}")


def build_parser() -> argparse.ArgumentParser:
    _import_command_modules()

    parser = argparse.ArgumentParser(prog="python -m raysys", description="Structured-convolution experiments on Ray.")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name, (help_text, setup) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(handler=setup(sub_parser))
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
    try:
        code = int(args.handler(args) or 0)
        _stop_ray_output()  # the command's last line is out
        return code
    except RaysysError as exc:
        _stop_ray_output()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        _stop_ray_output()
        print("error: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        _stop_ray_output()
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return int(exc.code)


def _stop_ray_output() -> None:
    """Nothing may print after the final ``error:`` line: Ray forwards worker output until told not to."""
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
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.exit(code)
