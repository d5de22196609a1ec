"""Translators from the original codebases' command lines to raysys commands.

A translator takes the original script's arguments and returns a
:class:`Translation`. Every flag is either mapped or refused by name: an
unsupported flag is never silently dropped.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable, List, Sequence

from raysys.errors import ConfigError
from raysys.registry import Registry


@dataclass
class Translation:
    """The raysys command equivalent to an original command line."""

    command: str  # a raysys subcommand: "train", "eval", ...
    preset: str
    overrides: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def argv(self) -> List[str]:
        return [self.command, self.preset, *self.overrides]

    def shell(self) -> str:
        return " ".join(shlex.quote(a) for a in ["python", "-m", "raysys", *self.argv()])


Translator = Callable[[Sequence[str]], Translation]
TRANSLATORS: Registry[Translator] = Registry("legacy script")


def register_translator(script: str) -> Callable[[Translator], Translator]:
    """Register a translator for the original script's file name (e.g. "main.py")."""
    return TRANSLATORS.register(script)


def split_command(argv: Sequence[str]) -> tuple[str, List[str]]:
    """('script.py', args) from 'python [-u] path/to/script.py args...'."""
    args = list(argv)
    if len(args) == 1 and " " in args[0]:
        args = shlex.split(args[0])
    while args and (PurePosixPath(args[0]).name.startswith("python") or args[0] in ("-u", "-m")):
        args.pop(0)
    if not args:
        raise ConfigError("legacy: give the original command after --, e.g. -- python run_experiment.py seed=0")
    return PurePosixPath(args[0]).name, args[1:]


def translate(argv: Sequence[str]) -> Translation:
    script, args = split_command(argv)
    if script not in TRANSLATORS:
        known = TRANSLATORS.names() or ["(none registered yet)"]
        raise ConfigError(f"legacy: no translator for {script!r}; known scripts: {', '.join(known)}")
    return TRANSLATORS.get(script)(args)
