"""``python -m raysys <command>``: one entry point; errors print as one line."""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import List, Optional

from raysys.cli.registry import COMMANDS
from raysys.errors import RaysysError


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
        return int(args.handler(args) or 0)
    except RaysysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
