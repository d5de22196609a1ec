"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""
from __future__ import annotations

import difflib
from typing import Iterable


class RaysysError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


class ConfigError(RaysysError):
    """A preset, key or value that the config schema does not allow."""


class DataError(RaysysError):
    """Missing, corrupt or mismatched dataset files or shards."""


class CheckpointError(RaysysError):
    """A checkpoint that cannot be loaded into this run."""


class TrackingError(RaysysError):
    """MLflow tracking is unreachable or misconfigured."""


class ClusterError(RaysysError):
    """Ray could not be started or joined (the local Ray did not come up, the cluster refused us)."""


class TrainingError(RaysysError):
    """Training stopped for a reason the user must look at (e.g. NaN loss)."""

    exit_code = 1


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread so that the run is closed on the way out (exit code 143)."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' for the closest choices, or ''."""
    matches = difflib.get_close_matches(str(word), list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""


MAX_LISTED = 12


def one_of(value: object, allowed: Iterable[str]) -> str:
    """'X is not one of [...]' with close-match suggestions; long lists are counted, not printed."""
    allowed = sorted(set(allowed))
    listed = str(allowed) if len(allowed) <= MAX_LISTED else f"the {len(allowed)} known names"
    return f"{value!r} is not one of {listed}{did_you_mean(str(value), allowed)}"
