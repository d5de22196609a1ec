"""Subcommands of ``raysys``: each registers its parser, handler and the examples ending its ``--help``."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable, Sequence, Tuple

from raysys.registry import Registry
from raysys.track.uri import redact

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    help: str
    setup: Callable[[argparse.ArgumentParser], Handler]
    examples: Tuple[str, ...] = ()


COMMANDS: Registry = Registry("command", discover=False)  # no family adds commands


def command(name: str, help: str, examples: Sequence[str] = ()):
    """Register ``fn(parser)`` that adds arguments and returns the handler; ``examples`` end its ``--help``."""

    def register(setup: Callable[[argparse.ArgumentParser], Handler]):
        COMMANDS.add(name, Command(help, setup, tuple(examples)))
        return setup

    return register


def examples_epilog(examples: Sequence[str]) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else ""


def lazy_epilog(parser: argparse.ArgumentParser, text: Callable[[], str]) -> None:
    """Append ``text()`` to the parser's help, computed only when the help is shown (it may import torch)."""
    format_help = parser.format_help

    def with_text() -> str:
        help_text = format_help()
        extra = text()
        if not parser.epilog:
            return help_text + "\n" + extra + "\n"
        head, sep, tail = help_text.rpartition("examples:")  # the listing goes before the examples
        return f"{head}{extra}\n\n{sep}{tail}" if sep else help_text + "\n" + extra + "\n"

    parser.format_help = with_text  # type: ignore[method-assign]


def deprecated_flag(parser: argparse.ArgumentParser, flag: str, override: str, dest: str, metavar: str = "URI") -> None:
    """``flag VALUE``: the old spelling of the override ``override=VALUE``, kept with a one-line note."""

    class Deprecated(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"note: {flag} is deprecated; write {override}={redact(str(values))}", file=sys.stderr)
            setattr(namespace, self.dest, values)

    parser.add_argument(flag, dest=dest, default="", action=Deprecated, metavar=metavar,
                        help=f"deprecated: write {override}={metavar}")
