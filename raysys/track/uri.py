"""Where MLflow runs go: the embedded sqlite default, reachability, redaction."""
from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

from raysys.errors import TrackingError

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def default_tracking_uri(cwd: Path | None = None) -> str:
    """A local sqlite file, ./mlflow.db: MLflow with no server."""
    return f"sqlite:///{(cwd or Path.cwd()).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(configured: str) -> str:
    return configured or default_tracking_uri()


def redact(value: str) -> str:
    """Drop credentials from a URI (``http://user:pw@host`` -> ``http://***@host``)."""
    return _USERINFO.sub("***@", value)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with one line, when an MLflow server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
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
