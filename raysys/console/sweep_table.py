"""The live table of a sweep's trials: one row per run, redrawn in place on a terminal, plain lines elsewhere.

A row is queued, running (epoch and latest metric), finished (its metric), failed (the
first line of its reason) or skipped (finished earlier). The sweep tells the table what
happens (:meth:`SweepTable.started`, :meth:`~SweepTable.epoch`, :meth:`~SweepTable.finished`,
:meth:`~SweepTable.failed`); :meth:`~SweepTable.close` writes the summary. The metric's name
comes as it is shown (e.g. ``test/acc``): this module knows no metric names.
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from raysys.console.lines import clear_live, elapsed, hide_live, show_live

STATES = ("queued", "running", "finished", "failed", "skipped")
REASON_WIDTH = 60  # characters of a failure's first line in the live table (the summary has the line)


@dataclass
class TableRow:
    key: str  # the run name: unique in a sweep
    label: str
    seed: int
    state: str = "queued"
    epoch: int = 0
    epochs: int = 0
    value: Optional[float] = None  # the latest value of the table's metric
    reason: str = ""


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, stripped."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


class SweepTable:
    """The trials of one sweep; ``live``: redraw in place (a terminal), else a plain line per change."""

    def __init__(self, rows: Sequence[TableRow], *, metric: str = "test/acc", live: Optional[bool] = None, stream=None):
        self._stream = stream  # None: the process's stderr, looked up when drawing (Tune pickles its callbacks)
        self.live = bool(getattr(self.stream, "isatty", lambda: False)()) if live is None else live
        self.metric = metric
        self.rows: Dict[str, TableRow] = {row.key: row for row in rows}
        self._drawn = 0  # lines of the last live drawing, to move back over
        self._closed = False

    @property
    def stream(self):
        return self._stream or sys.stderr

    # -- what happens ---------------------------------------------------------------
    def started(self, key: str) -> None:
        self._change(key, state="running")

    def epoch(self, key: str, epoch: int, epochs: int = 0, value: Optional[float] = None) -> None:
        row = self.rows[key]
        self._change(key, state="running", epoch=int(epoch), epochs=int(epochs or row.epochs),
                     value=row.value if value is None else float(value))

    def finished(self, key: str, value: Optional[float] = None) -> None:
        row = self.rows[key]
        self._change(key, state="finished", value=row.value if value is None else float(value))

    def failed(self, key: str, reason: str) -> None:
        self._change(key, state="failed", reason=first_line(reason))

    def _change(self, key: str, **fields) -> None:
        row = self.rows.get(key)
        if row is None or self._closed:
            return
        before = (row.state, row.epoch)
        for name, value in fields.items():
            setattr(row, name, value)
        if self.live:
            self.draw()
        elif (row.state, row.epoch) != before:
            self._write([f"raysys {elapsed()} {self.describe(row)}"])

    # -- what it shows ----------------------------------------------------------------
    def counts(self) -> Dict[str, int]:
        return {state: sum(r.state == state for r in self.rows.values()) for state in STATES}

    def describe(self, row: TableRow, *, width: int = REASON_WIDTH) -> str:
        """One row: ``<run name>  seed N  <state>[ epoch e/E][  <metric> v][  <reason>]``."""
        text = f"{row.key}  seed {row.seed}  {row.state}"
        if row.state == "running" and row.epoch:
            text += f" epoch {row.epoch}/{row.epochs}" if row.epochs else f" epoch {row.epoch}"
        if row.value is not None and row.state != "failed":
            text += f"  {self.metric} {row.value:.4f}"
        if row.reason:
            reason = row.reason if len(row.reason) <= width else row.reason[:width - 3] + "..."
            text += f"  {reason}"
        return text

    def lines(self) -> List[str]:
        """The live drawing: a count line, then one line per row."""
        counts = self.counts()
        head = "sweep: " + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
        return [head, *(f"  {self.describe(r)}" for r in self.rows.values())]

    def summary(self) -> List[str]:
        """The end: every row with its outcome (a failure's whole first line), then the counts."""
        counts = self.counts()
        out = [f"sweep summary ({len(self.rows)} runs):"]
        out += [f"  {self.describe(r, width=10**6)}" for r in self.rows.values()]
        out.append("  " + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s]))
        return out

    def draw(self) -> None:
        """Redraw the live table over the last drawing; other lines (notes, phases) now go above it."""
        # A line wider than the terminal would wrap and break the count of lines to move back over.
        width = max(20, shutil.get_terminal_size().columns - 1)
        lines = [line if len(line) <= width else line[:width - 3] + "..." for line in self.lines()]
        up = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
        with clear_live(writer=self):
            self.stream.write(up + "".join(line + "\n" for line in lines))
            self.stream.flush()
        self._drawn = len(lines)
        show_live(self)

    def erase(self) -> None:
        """Take the live drawing off the terminal (a line is about to be written where it was)."""
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self.stream.flush()
            self._drawn = 0

    def redraw(self) -> None:
        if not self._closed:
            self.draw()

    def close(self) -> None:
        """Write the summary (in place of the live table); nothing changes after."""
        if self._closed:
            return
        self._closed = True
        hide_live(self)
        if self.live:
            self.erase()
        self._write(self.summary())

    def _write(self, lines: List[str]) -> None:
        with clear_live(writer=self):
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()
