"""Ray's, Ray Data's and Ray Train's own console output: into a log file, warnings and errors as one line.

By default (no ``--verbose``) a command

- sets Ray's switches before Ray is imported (:func:`prepare`): no Ray Data progress
  bars (``RAY_DATA_DISABLE_PROGRESS_BARS``, inherited by the local Ray's workers), no
  Ray Train V2 migration notes;
- once Ray is up (:func:`take_over`, called by ``raysys.train.session.ensure_ray``)
  takes the workers' forwarded stdout/stderr (Ray's ``ray_print_logs`` handler), the
  driver's ``ray*`` loggers and Python warnings raised inside Ray, and writes them to
  one log file: ``console.log`` beside the run's checkpoints (:func:`attach`), else
  ``runs/logs/<command>-<time>-<pid>.log``; its path is printed once;
- shows a known harmless message (:data:`BENIGN`: the preemption watcher, Ray Data
  waiting for CPUs, restartable actors' constructor arguments) as one short
  ``raysys: note: ...`` line naming that file, once;
- passes each other distinct warning or error on as one ``raysys: Ray warning: ...`` line
  naming that file, at most :data:`MAX_NOTICES` of them, and none after
  :func:`stop` (the command's final line is out).
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import List, Optional

from raysys.console.lines import is_verbose, note

LOG_NAME = "console.log"
DEFAULT_DIR = Path("runs") / "logs"
MAX_NOTICES = 5
NOTICE_WIDTH = 80  # characters of Ray's message in a notice; the log file has all of it
QUIET_ENV = {
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
}
HANDLER_NAME = "raysys_console"
# What marks a forwarded line as a warning or an error: Python's levels and warnings,
# glog's "[... E 123 456] file.cc:7:" / "W ...", tracebacks.
_SEVERE = re.compile(r"\b(WARNING|ERROR|CRITICAL|FATAL)\b|Warning\b|Error\b|Traceback \(most recent|\] \S+\.cc:\d+:| [EWF] \d+ \d+\]")
# Ray's notes about the switches raysys sets itself: not worth a line.
_EXPECTED = ("Progress bars disabled", "A new progress UI is available")
# Ray's warnings that are expected and harmless in raysys's runs: (what the message contains, the friendly
# notice shown instead, once, naming the log file). Anything else is passed on as a warning.
BENIGN = (
    # core_worker.cc: "Actor with class name: '...' and ID: ... has constructor arguments in the object store and
    # max_restarts > 0 ..." for every restartable actor Ray Train and Tune create (trials, controllers, watchers).
    ("has constructor arguments in the object store", "Ray notes that a restartable actor keeps its constructor "
                                                      "arguments in the object store; raysys's runs are unaffected"),
    ("PreemptionWatcher", "Ray Train's preemption watcher could not poll the cluster; training is unaffected"),
    ("does not have any available CPUs", "Ray Data waits for CPUs the training workers hold; it proceeds as they free up"),
    ("Cluster resources are not enough to run any task", "Ray Data waits for free CPUs (workers hold them); "
                                                          "it proceeds as they free up"),
    ("maximum expected startup concurrency", "Ray started many worker processes at once (normal at a sweep's start)"),
    # Tune stops a finished trial's process with SIGTERM; Ray's handler raises SystemExit inside Python's cleanup,
    # which prints "Exception ignored in: ... sigterm_handler ... SystemExit: 1".
    ("in sigterm_handler", "Ray stopped a finished trial's process (SIGTERM) during its clean-up; its run is unaffected"),
)
_NUMBERS = re.compile(r"\d+|0x[0-9a-fA-F]+")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _Sink:
    """The log file (lines held in memory until its path is known) and the notices."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.path: Optional[Path] = None
        self.file = None
        self.held: List[str] = []
        self.pending: List[str] = []  # notices waiting for the file's path
        self.seen: set = set()
        self.notices = 0
        self.stopped = False
        self.command = "raysys"
        self.is_default = False  # the file is runs/logs/...: moved when a run's folder is attached

    def reset(self, command: str) -> None:
        """A new command in this process (``legacy``, tests): a new file, notices again."""
        with self.lock:
            if self.file is not None:
                self.file.close()
            self.__init__()
            self.command = command

    def write(self, text: str) -> None:
        with self.lock:
            if self.file is not None:
                self.file.write(text if text.endswith("\n") else text + "\n")
                self.file.flush()
            else:
                self.held.append(text)

    def notice(self, source: str, text: str) -> None:
        text = _ANSI.sub("", text).strip()
        key = _NUMBERS.sub("#", text)[:200]
        if any(expected in text for expected in _EXPECTED):
            return
        friendly = benign(text)
        if friendly is not None:
            self.benign(friendly)
            return
        with self.lock:
            if self.stopped or not text or key in self.seen or self.notices >= MAX_NOTICES:
                return
            self.seen.add(key)
            self.notices += 1
            if len(text) > NOTICE_WIDTH:
                text = text[:NOTICE_WIDTH - 3] + "..."
            message = f"Ray {source}: {text}"
            if self.notices == MAX_NOTICES:
                message += " (further warnings only in the log)"
            if self.path is None:
                self.pending.append(message)
                return
        note(f"{message} [{_shown(self.path)}]")

    def benign(self, friendly: str) -> None:
        """A known harmless message: one short notice line (once each), not counted as a warning."""
        with self.lock:
            if self.stopped or friendly in self.seen:
                return
            self.seen.add(friendly)
            message = f"note: {friendly}"
            if self.path is None:
                self.pending.append(message)
                return
        note(f"{message} [{_shown(self.path)}]")

    def open(self, path: Path, *, default: bool = False) -> None:
        with self.lock:
            if self.path is not None and Path(path) == self.path:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            old = self.file
            self.file = open(path, "a", encoding="utf-8")
            if old is not None:
                old.close()
                if self.is_default:  # moved beside the run's checkpoints: keep what the first file held
                    self.held = [Path(self.path).read_text(encoding="utf-8")]
                    Path(self.path).unlink(missing_ok=True)
            self.is_default = default
            for text in self.held:
                self.file.write(text if text.endswith("\n") else text + "\n")
            self.file.flush()
            self.held = []
            self.path = Path(path)
            pending, self.pending = self.pending, []
        note(f"Ray's own output is in {path} (--verbose shows it here)")
        for message in pending:
            note(f"{message} [{_shown(path)}]")


def benign(text: str) -> Optional[str]:
    """The friendly notice of a known harmless Ray message (:data:`BENIGN`), else None."""
    return next((friendly for marker, friendly in BENIGN if marker in text), None)


_SINK = _Sink()
_taken = False  # the dispatcher's handler is ours
_warnings_taken = False


def prepare(command: str = "raysys") -> None:
    """Before Ray is imported: the environment switches that keep its output off the console."""
    _SINK.reset(command)
    if is_verbose():
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def active() -> bool:
    return not is_verbose()


def take_over() -> None:
    """Once Ray is initialised in this process: route its console output to the log (idempotent)."""
    global _taken, _warnings_taken
    if is_verbose():
        return
    _retarget_loggers()
    if _taken:
        return
    _taken = True
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    dispatcher.remove_handler("ray_print_logs")
    dispatcher.remove_handler(HANDLER_NAME)
    dispatcher.add_handler(HANDLER_NAME, _forwarded)
    # Errors that Ray publishes to the driver (a raylet that died, ...) are printed by a
    # thread of the driver that calls this module function directly, not the dispatcher.
    import ray._private.worker as ray_worker

    ray_worker.print_to_stdstream = lambda data, ignore_prefix=False: _forwarded(data)
    _quiet_data_context()
    if _warnings_taken:
        return
    _warnings_taken = True
    previous = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if f"{os.sep}ray{os.sep}" not in str(filename):
            return previous(message, category, filename, lineno, file, line)
        _SINK.write(warnings.formatwarning(message, category, filename, lineno, line))
        if not issubclass(category, DeprecationWarning):  # Ray's deprecations are for raysys's developers
            _SINK.notice("warning", f"{category.__name__}: {message}")

    warnings.showwarning = showwarning


def attach(folder: str) -> Optional[Path]:
    """Write the log to ``folder``/console.log (a run's checkpoint folder); a URI keeps the default."""
    if is_verbose():
        return None
    local = folder and "://" not in str(folder)
    path = Path(folder) / LOG_NAME if local else _default_path()
    _SINK.open(path, default=not local)
    return path


def log_path() -> Optional[Path]:
    return _SINK.path


def finish() -> None:
    """The command's work is done: anything held goes to a file; no notice after this."""
    with _SINK.lock:
        held = bool(_SINK.held or _SINK.pending)
    if held and _SINK.path is None and not is_verbose():
        _SINK.open(_default_path(), default=True)
    stop()


def stop() -> None:
    """No more notices (the command's last line is out); the log file keeps what still comes."""
    global _taken
    with _SINK.lock:
        _SINK.stopped = True
    if _taken:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

        dispatcher.remove_handler(HANDLER_NAME)
        _taken = False


def _shown(path: Path) -> str:
    """The log file's path in a notice: relative to the working directory when inside it (shorter)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _default_path() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return DEFAULT_DIR / f"{_SINK.command}-{stamp}-{os.getpid()}.log"


def _forwarded(data: dict) -> None:
    """Ray's ``print_logs`` batch of one worker's lines: ``lines``, ``pid``, ``actor_name``/``task_name``."""
    lines = [part for line in data.get("lines", []) for part in str(line).splitlines() if part.strip()]
    if not lines:
        return
    who = data.get("actor_name") or data.get("task_name") or ("raylet" if data.get("pid") == "raylet" else "")
    prefix = f"({who} pid={data.get('pid')}) " if who else f"(pid={data.get('pid')}) "
    _SINK.write("".join(prefix + line + "\n" for line in lines))
    text = "\n".join(lines)
    if data.get("pid") == "raylet":  # an error Ray published to the driver: its first line says what
        _SINK.notice("error (raylet)", lines[0])
        return
    if "Traceback (most recent" in text:
        friendly = benign(text)  # a known harmless traceback (BENIGN) is matched on its whole text
        if friendly is not None:
            _SINK.benign(friendly)
        else:
            _SINK.notice(f"error ({who or 'worker'})", _exception_line(lines))
        return
    for line in lines:
        if _SEVERE.search(line) or benign(line):
            _SINK.notice(f"warning ({who or 'worker'})", line)


def _exception_line(lines: List[str]) -> str:
    """The ``Error: message`` line that ends the first traceback in ``lines``."""
    start = next(i for i, line in enumerate(lines) if "Traceback (most recent" in line)
    for line in lines[start + 1:]:
        if line and not line[0].isspace() and "Traceback (most recent" not in line:
            return line
    return lines[-1]


class _LogHandler(logging.Handler):
    """The driver's ``ray*`` log records: into the log; WARNING and above also as a notice."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _SINK.write(self.format(record))
            if record.levelno >= logging.WARNING:
                _SINK.notice(record.levelname.lower(), record.getMessage().splitlines()[0])
        except Exception:  # noqa: BLE001 - logging must never fail the command
            self.handleError(record)


_HANDLER = _LogHandler()


def _retarget_loggers() -> None:
    """Every ``ray*`` logger's console handlers are replaced by the log file's."""
    names = ["ray", *[n for n in logging.root.manager.loggerDict if n.startswith("ray.")]]
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
        if name == "ray" or not logger.propagate:
            if _HANDLER not in logger.handlers:
                logger.addHandler(_HANDLER)
            logger.propagate = False


def _quiet_data_context() -> None:
    if "ray.data" not in sys.modules:
        return
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
