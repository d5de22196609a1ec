"""One line for why a run failed: the innermost error of Ray Train, Ray Tune or our own code."""
from __future__ import annotations

from raysys.errors import RaysysError

# Our error classes, as they appear in text Ray re-raises from a worker or trial.
_MARKERS = ("TrainingError:", "FloatingPointError:", "DataError:", "CheckpointError:", "ConfigError:", "TrackingError:")


def reason_from_text(text: str, fallback: str = "") -> str:
    """The message after the last of our error markers, else the last non-empty line."""
    for marker in _MARKERS:
        if marker in text:
            return text.rsplit(marker, 1)[1].strip().splitlines()[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else fallback


def root_cause(exc: BaseException) -> str:
    """The innermost worker error of a Ray Train (or Tune) failure, as one line."""
    seen = exc
    for attr in ("worker_failures", "controller_failure"):
        failures = getattr(exc, attr, None)
        if isinstance(failures, dict) and failures:
            seen = next(iter(failures.values()))
        elif isinstance(failures, BaseException):
            seen = failures
    while getattr(seen, "cause", None) is not None and seen.cause is not seen:
        seen = seen.cause
    text = str(seen).strip()
    if isinstance(seen, RaysysError) and text:  # our own one-line message, re-raised by Ray
        return text.splitlines()[0]
    reason = reason_from_text(text)
    if any(marker in text for marker in _MARKERS):
        return reason
    return f"{type(seen).__name__}: {reason}".strip().rstrip(":")
