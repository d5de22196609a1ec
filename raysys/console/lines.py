"""One-line messages on stderr: the phase a command is in, and notes.

stdout stays for a command's result (one JSON line); everything shown while a
command works goes to stderr, prefixed ``raysys:``.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager, nullcontext
from typing import List, Optional, Protocol

VERBOSE_ENV = "RAYSYS_VERBOSE"  # inherited by a sweep's trial processes
_START = time.monotonic()


def set_verbose(verbose: bool) -> None:
    """``--verbose``: show Ray's, Ray Data's and Ray Train's own output as it comes."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def elapsed() -> str:
    """Seconds since this process started raysys, e.g. ``[  3.2s]``."""
    return f"[{time.monotonic() - _START:5.1f}s]"


def phase(text: str) -> None:
    """Name the step that starts now, e.g. ``phase("starting Ray (local, 3 CPUs)")``."""
    _write(f"raysys {elapsed()} {text}")


def note(text: str) -> None:
    """A line outside the phases: a warning passed on, where a log file is."""
    _write(f"raysys: {text}")


def _write(line: str) -> None:
    with clear_live():  # a live bar is moved out of the way and drawn again under the line
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


class LiveDisplay(Protocol):
    """A drawing kept at the bottom of the terminal (the sweep table): moved out of the way of a line."""

    def erase(self) -> None: ...

    def redraw(self) -> None: ...


_LIVE: List[LiveDisplay] = []


def show_live(display: LiveDisplay) -> None:
    """``display`` is drawn at the bottom now: lines written through :func:`clear_live` go above it."""
    if display not in _LIVE:
        _LIVE.append(display)


def hide_live(display: LiveDisplay) -> None:
    if display in _LIVE:
        _LIVE.remove(display)


@contextmanager
def clear_live(writer: Optional[LiveDisplay] = None):
    """Write a line while live displays are drawn: tqdm bars and the displays of :func:`show_live` (other
    than ``writer``, the one writing) are cleared first and drawn again after."""
    tqdm = sys.modules.get("tqdm")
    live = tqdm is not None and getattr(tqdm.tqdm, "_instances", None)
    others = [display for display in _LIVE if display is not writer]
    for display in others:
        display.erase()
    try:
        with (tqdm.tqdm.external_write_mode(file=sys.stderr) if live else nullcontext()):
            yield
    finally:
        for display in others:
            display.redraw()
