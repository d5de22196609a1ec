"""No credential in what this process prints.

``install_redaction()`` (called once, at the start of a command) passes everything the
process prints through ``raysys.track.uri.redact`` (URI userinfo ``user:pw@``, values of
environment variables named like secrets, the local Ray's ``RAY_AUTH_TOKEN``):

- every log record, of every logger and for every handler, present or added later (a
  log record factory rewrites the formatted message);
- every write to ``sys.stdout`` and ``sys.stderr``: MLflow's client writes its
  "View run ... at: <tracking URI>/#/experiments/..." lines there directly, not
  through logging; Ray prints its workers' forwarded output there; tracebacks and the
  final JSON line go there too. Handlers that already hold the original streams are
  pointed at the redacting ones.

A secret cut in two by separate ``write`` calls is not recognised; ``print`` and
logging write a message in one call. Output of C++ code straight to file descriptors
1/2 does not pass through Python and is not covered.

Better still, keep credentials out of the tracking URI: MLflow reads
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (or ``MLFLOW_TRACKING_TOKEN``)
from the environment, and then no URL it prints carries them (docs/cluster.md).
"""
from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

from raysys.track.uri import redact

_lock = threading.Lock()
_installed = False


class RedactingStream:
    """A text stream that redacts what is written to it, and is otherwise the stream it wraps."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    @property
    def wrapped(self) -> TextIO:
        return self._stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text) if isinstance(text, str) and text else text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, buffer, ...
        return getattr(self._stream, name)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the handler's to report, as before
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None


def _wrap(stream: TextIO | None) -> TextIO | None:
    if stream is None or isinstance(stream, RedactingStream):
        return stream
    return RedactingStream(stream)  # type: ignore[return-value]


def install_redaction() -> None:
    """Redact credentials from this process's log records, stdout and stderr (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        previous_factory = logging.getLogRecordFactory()

        def factory(*args, **kwargs):
            record = previous_factory(*args, **kwargs)
            _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)

        sys.stdout, sys.stderr = _wrap(sys.stdout), _wrap(sys.stderr)
        originals = {id(s.wrapped): s for s in (sys.stdout, sys.stderr) if isinstance(s, RedactingStream)}
        # Handlers made before now (logging.basicConfig, MLflow's and Ray's own) hold the raw streams.
        loggers = [logging.getLogger()] + [
            lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
        ]
        for lg in loggers:
            for handler in lg.handlers:
                if isinstance(handler, logging.StreamHandler) and id(handler.stream) in originals:
                    handler.setStream(originals[id(handler.stream)])
