"""Ray for a benchmark, started the way ``raysys train`` starts it, with its start-up timed."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger(__name__)
# Ray's dashboard may time out while starting on a loaded machine: try again once.
START_ATTEMPTS = 2


def _start(min_cpus: int) -> float:
    """Seconds ``ensure_ray`` took to start Ray (the last, successful attempt)."""
    import ray

    from raysys.train.session import ensure_ray

    def attempt() -> float:
        begin = time.perf_counter()
        ensure_ray(min_cpus=min_cpus)
        return time.perf_counter() - begin

    for _ in range(START_ATTEMPTS - 1):
        try:
            return attempt()
        except Exception as exc:  # noqa: BLE001 - Ray raises plain Exceptions here
            ray.shutdown()
            log.warning("starting Ray failed (%s); trying again", str(exc).strip().splitlines()[-1:])
    return attempt()


@contextmanager
def local_ray(min_cpus: int = 0) -> Iterator[float]:
    """The running Ray, else a new one from ``raysys.train.session.ensure_ray``.

    Yields the start-up seconds (0.0 if Ray was already running) and shuts
    down only a Ray it started.
    """
    import ray

    started = not ray.is_initialized()
    startup = _start(min_cpus) if started else 0.0
    try:
        yield startup
    finally:
        if started:
            ray.shutdown()
