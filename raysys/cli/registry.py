"""Subcommands of ``python -m raysys``: each registers its parser and handler."""
from __future__ import annotations

import argparse
from typing import Callable

from raysys.registry import Registry

Handler = Callable[[argparse.Namespace], int]
COMMANDS: Registry = Registry("command", discover=False)  # no family adds commands


def command(name: str, help: str):
    """Register ``fn(parser)`` that adds arguments and returns the handler."""

    def register(setup: Callable[[argparse.ArgumentParser], Handler]):
        COMMANDS.add(name, (help, setup))
        return setup

    return register
