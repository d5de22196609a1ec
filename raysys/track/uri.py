"""Where MLflow runs go: the embedded sqlite default, reachability, redaction."""
from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from raysys.errors import TrackingError

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|API_?KEY|ACCESS_KEY|PRIVATE_KEY", re.IGNORECASE)
_NOT_SECRET_NAME = re.compile(r"_(DIR|FILE|PATH)$", re.IGNORECASE)  # where a secret lives, not the secret
MIN_SECRET_LENGTH = 6


def default_tracking_uri(cwd: Path | None = None) -> str:
    """A local sqlite file, ./mlflow.db: MLflow with no server."""
    return f"sqlite:///{(cwd or Path.cwd()).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(configured: str) -> str:
    return configured or default_tracking_uri()


def environ_snapshot() -> dict[str, str]:
    """A copy of ``os.environ`` that other threads changing the environment cannot break.

    ``os.environ.items()``, ``.copy()`` and ``dict(os.environ)`` all list the keys first
    and then look each one up: a key another thread deletes in between raises KeyError
    (MLflow's telemetry thread drops ``_MLFLOW_TELEMETRY_SESSION_ID``; a sweep trial
    failed so). ``os.environ`` keeps its contents in one plain dict, ``_data`` (CPython
    since 3.2; every ``os.environ[k] = v`` / ``del`` updates it after putenv/unsetenv):
    ``dict.copy()`` of it is a single C call that copies the bytes keys and values
    without running any Python code, so no other thread can run in the middle (the GIL;
    the dict's own lock on free-threaded builds). Should ``_data`` ever go, the copy
    is retried until one pass sees no key vanish.
    """
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        raw = data.copy()
        decode_key, decode_value = os.environ.decodekey, os.environ.decodevalue
        return {decode_key(k): decode_value(v) for k, v in raw.items()}
    while True:  # pragma: no cover - only without os.environ._data
        try:
            return dict(os.environ)
        except (KeyError, RuntimeError):
            continue


def secret_values() -> list[str]:
    """Values of environment variables named like secrets (``*_TOKEN``, ``*PASSWORD*``, ...)."""
    values = {
        v for k, v in environ_snapshot().items()
        if _SECRET_NAME.search(k) and not _NOT_SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH
    }
    return sorted(values, key=len, reverse=True)


def redact(value: str) -> str:
    """Drop credentials: URI userinfo (``http://user:pw@host`` -> ``http://***@host``) and secret env values."""
    value = _USERINFO.sub("***@", value)
    for secret in secret_values():
        value = value.replace(secret, "***")
    return value


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with one line, when an MLflow server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    url = _USERINFO.sub("", uri).rstrip("/") + "/health"  # /health needs no credentials
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status != 200:
                raise TrackingError(f"MLflow tracking server {redact(uri)} answered {response.status} at /health")
    except TrackingError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"MLflow tracking server {redact(uri)} is unreachable ({reason}); "
            "start it, or set tracking.uri to another server (empty = local sqlite file)"
        ) from None
