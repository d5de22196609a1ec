"""The driver's progress display of a training run: a live bar on a terminal, plain lines elsewhere.

Rank 0 sends its progress inside an epoch a few times a second and each finished
epoch's metrics (:mod:`raysys.train.feed`); the display shows them:

- ``bar``: one tqdm bar (epoch, batches done of the epoch, train loss and accuracy,
  lr, images/s, ETA of the run), redrawn at most a few times a second;
- ``lines``: without a terminal (CI, ``ray job submit``, a pipe), one plain line at
  every tenth of an epoch or every 30 s, whichever comes first;

and both one summary line per finished epoch, naming each metric as MLflow records
it (``train/loss``, ``test/acc``).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Dict, Optional

from raysys.console.lines import clear_live, elapsed
from raysys.registry import Registry

LINE_EVERY_FRACTION = 0.1  # lines mode: a line at every tenth of an epoch ...
LINE_EVERY_S = 30.0  # ... or after this many seconds without one
BAR_REFRESH_S = 0.25

DISPLAYS: Registry = Registry("progress display", discover=False)


def resolve_mode(progress: Any, stream=None) -> str:
    """``True``/"auto": a bar on a terminal, lines elsewhere; ``False``/"off": nothing; or "bar"/"lines"."""
    if progress is True or progress == "auto":
        stream = stream or sys.stderr
        return "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
    if progress in (False, None, "off", ""):
        return "off"
    return DISPLAYS.canonical(str(progress))


def make_display(progress: Any, total_epochs: int, desc: str = "") -> Optional["Display"]:
    """The display for ``progress`` (see :func:`resolve_mode`), or None for "off"."""
    mode = resolve_mode(progress)
    return None if mode == "off" else DISPLAYS.get(mode)(total_epochs, desc)


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def describe(p: Dict[str, Any], total_epochs: int) -> str:
    """``loss 0.9123  acc 67.1%  lr 0.1  812 img/s  eta 0:32`` for a progress message."""
    parts = [f"loss {p['loss']:.4f}", f"acc {100 * p['acc']:.1f}%", f"lr {p['lr']:.4g}",
             f"{p['images_per_sec']:.0f} img/s"]
    eta = run_eta(p, total_epochs)
    if eta is not None:
        parts.append(f"eta {_clock(eta)}")
    return "  ".join(parts)


def run_eta(p: Dict[str, Any], total_epochs: int) -> Optional[float]:
    """Seconds left in the run at this epoch's pace (evaluation not counted)."""
    batch, batches, elapsed = p["batch"], p["batches"], p["elapsed"]
    if batch <= 0 or elapsed <= 0:
        return None
    per_batch = elapsed / batch
    remaining = (batches - batch) + max(0, total_epochs - p["epoch"]) * batches
    return remaining * per_batch


# What an epoch's summary line shows: (flat name, MLflow's grouped name, format). It names each metric
# as MLflow records it (raysys.track.metric_names, a leaf this one may not import) and reads either spelling.
SUMMARY = (
    ("train_loss", "train/loss", "train/loss {:.4f}"),
    ("train_acc", "train/acc", "train/acc {:.1%}"),
    ("val_loss", "val/loss", "val/loss {:.4f}"),  # a validation pass (STIR's epochs: the val split)
    ("val_acc", "val/acc", "val/acc {:.1%}"),
    ("test_loss", "test/loss", "test/loss {:.4f}"),
    ("test_acc", "test/acc", "test/acc {:.1%}"),
    ("images_per_sec", "time/images_per_sec", "{:.0f} img/s"),
    ("epoch_time", "time/epoch", "{:.1f} s"),
)


def epoch_summary(m: Dict[str, Any], total_epochs: int) -> str:
    """``epoch 1/2  train/loss 0.9100  train/acc 67.1%  test/loss 0.7100  test/acc 74.1%  812 img/s  12.3 s``."""
    parts = [f"epoch {int(m['epoch'])}/{total_epochs}"]
    for flat, recorded, shown in SUMMARY:
        found = m.get(recorded, m.get(flat))
        if found is not None:
            parts.append(shown.format(float(found)))
    return "  ".join(parts)


class Display:
    """What a display is told: progress inside an epoch, a finished epoch, the end."""

    def __init__(self, total_epochs: int, desc: str = ""):
        self.total_epochs = max(1, int(total_epochs))
        self.desc = desc

    def update(self, p: Dict[str, Any]) -> None:
        """``p``: epoch (1-based), batch, batches, loss, acc, lr, images_per_sec, elapsed (s in the epoch)."""

    def epoch_done(self, metrics: Dict[str, Any]) -> None:
        _line(epoch_summary(metrics, self.total_epochs))

    def close(self) -> None:
        """Leave the terminal as the next line expects it."""


def _line(text: str) -> None:
    with clear_live():
        sys.stderr.write(f"raysys {elapsed()} {text}\n")
        sys.stderr.flush()


@DISPLAYS.register("lines")
class LineDisplay(Display):
    """A plain line at every tenth of an epoch or every 30 s: for logs, CI and pipes."""

    def __init__(self, total_epochs: int, desc: str = "", *, clock: Callable[[], float] = time.monotonic):
        super().__init__(total_epochs, desc)
        self._clock = clock
        self._last_time = clock()
        self._last_key = (0, -1)  # (epoch, tenth) of the last line

    def update(self, p: Dict[str, Any]) -> None:
        tenth = int(p["batch"] / max(p["batches"], 1) / LINE_EVERY_FRACTION)
        key = (int(p["epoch"]), tenth)
        now = self._clock()
        if key > self._last_key or now - self._last_time >= LINE_EVERY_S:
            self._last_key, self._last_time = key, now
            share = f"{100 * p['batch'] / max(p['batches'], 1):3.0f}% {p['batch']}/{p['batches']} batches"
            _line(f"epoch {int(p['epoch'])}/{self.total_epochs}  {share}  {describe(p, self.total_epochs)}")

    def epoch_done(self, metrics: Dict[str, Any]) -> None:
        self._last_time = self._clock()
        super().epoch_done(metrics)


@DISPLAYS.register("bar")
class BarDisplay(Display):
    """One tqdm bar on the terminal, reset at each epoch; summaries are written above it."""

    def __init__(self, total_epochs: int, desc: str = ""):
        super().__init__(total_epochs, desc)
        self.bar = None
        self._epoch = 0

    def _bar(self, total: int):
        if self.bar is None:
            from tqdm import tqdm

            class Bar(tqdm):
                """tqdm with a ``{stats}`` field (its ``{postfix}`` comes with a leading comma)."""

                stats = ""

                @property
                def format_dict(self):
                    return {**super().format_dict, "stats": self.stats}

            self.bar = Bar(total=total, unit="batch", dynamic_ncols=True, mininterval=BAR_REFRESH_S, file=sys.stderr,
                           bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}  {stats}")
        return self.bar

    def update(self, p: Dict[str, Any]) -> None:
        bar = self._bar(int(p["batches"]))
        if int(p["epoch"]) != self._epoch:
            self._epoch = int(p["epoch"])
            bar.reset(total=int(p["batches"]))
            bar.set_description_str(f"epoch {self._epoch}/{self.total_epochs}", refresh=False)
        bar.n = int(p["batch"])
        bar.stats = describe(p, self.total_epochs)
        bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


