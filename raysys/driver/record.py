"""The MLflow run of one driver: found by identity, opened, kept alive, closed exactly once.

Every way a run can end leaves it FINISHED, FAILED or KILLED:

- an error, Ctrl-C or SIGTERM inside :meth:`RunRecord.guard` closes it FAILED or KILLED
  with ``raysys.failure_reason``;
- a process that dies without closing it (SIGKILL, a lost node) leaves a heartbeat
  that stops; the next command that touches the run, or ``raysys runs repair``,
  closes it FAILED once the heartbeat is older than :data:`STALE_AFTER_S`.

A FINISHED run carries no failure reason: each earlier attempt's end and reason is
kept in one tag, ``raysys.attempts``. Params and ``config.yaml`` are logged by
whichever attempt finds them missing.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

from omegaconf import DictConfig

from raysys.config.loader import flatten, to_yaml
from raysys.driver.failure import root_cause
from raysys.errors import RaysysError, Terminated, TrainingError
from raysys.track import identity, runs
from raysys.track.uri import redact

log = logging.getLogger("raysys.driver")

HEARTBEAT_TAG = "raysys.heartbeat"
DRIVER_TAG = "raysys.driver"
ATTEMPTS_TAG = "raysys.attempts"
KIND_TAG = "raysys.kind"
HEARTBEAT_EVERY_S = 30.0
STALE_AFTER_S = 180.0  # a heartbeat this old means no live process holds the run
MAX_ATTEMPTS_KEPT = 20
CONFIG_ARTIFACT = "config.yaml"
CHECKPOINT_DIR_TAG = "raysys.checkpoint_dir"  # Ray Train's folder of this run's checkpoints (for `runs repair`)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _age_s(iso: str) -> float:
    try:
        then = dt.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return float("inf")
    return (dt.datetime.now(dt.timezone.utc) - then).total_seconds()


def heartbeat_age_s(run) -> float:
    """Seconds since the run's driver last said it is alive (its start time for runs without a heartbeat)."""
    beat = run.data.tags.get(HEARTBEAT_TAG)
    if beat:
        return _age_s(beat)
    return time.time() - run.info.start_time / 1000.0


def _driver_gone(run) -> bool:
    """The run's driver was a process on this machine that no longer exists."""
    host, _, pid = run.data.tags.get(DRIVER_TAG, "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def is_dead(run) -> bool:
    """RUNNING, but no live process holds it: its heartbeat is stale, or its driver here has exited."""
    return run.info.status == "RUNNING" and (heartbeat_age_s(run) > STALE_AFTER_S or _driver_gone(run))


@dataclass
class Lookup:
    """What the store already holds for a config: the run to resume or adopt, and what else is there."""

    run: Any  # the same run (fingerprint equal, or recorded before fingerprints), or None
    verdict: str = ""  # identity.SAME / identity.UNVERIFIED when run is set
    stale: List[Any] = field(default_factory=list)  # FINISHED runs of that name with another fingerprint

    @property
    def finished(self) -> bool:
        return self.run is not None and self.run.info.status == "FINISHED"


def lookup(uri: str, exp_id: str, cfg: DictConfig, kind: str = "train") -> Lookup:
    """The newest run named ``cfg.run_name`` of ``kind`` whose identity is this config, ignoring superseded runs."""
    expected = identity.fingerprint(cfg)
    stale = []
    for run in runs.find_runs(uri, exp_id, cfg.run_name):
        if run.data.tags.get(identity.SUPERSEDED_TAG) or run.data.tags.get(KIND_TAG, "train") != kind:
            continue
        verdict = identity.match(run, expected)
        if verdict == identity.STALE:
            stale.append(run)
            continue
        return Lookup(run, verdict, stale)
    return Lookup(None, "", stale)


def _attempts(run) -> List[Dict[str, Any]]:
    try:
        value = json.loads(run.data.tags.get(ATTEMPTS_TAG, "[]"))
        return value if isinstance(value, list) else []
    except ValueError:
        return []


class RunRecord:
    """One open MLflow run; :meth:`guard` closes it however the block ends."""

    def __init__(self, uri: str, run_id: str, label: str, *, resumed: bool, train_name: str):
        self.uri, self.run_id, self.label, self.resumed = uri, run_id, label, resumed
        self.train_name = train_name  # Ray Train's run name: the folder of this run's checkpoints
        self._beat_stop = threading.Event()
        self._beat: Optional[threading.Thread] = None
        self.closed = False

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(
        cls, cfg: DictConfig, exp_id: str, found: Lookup, *, kind: str, tags: Dict[str, Any], label: str,
        parent_run_id: str = "", rerun: bool = False,
    ) -> "RunRecord":
        """Resume ``found.run`` (closing a dead attempt first) or create a new run; then log what is missing."""
        uri = cfg.tracking.uri
        fp = identity.fingerprint(cfg)
        mlflow_client = runs.client(uri)
        previous = found.run
        if previous is not None and not (rerun and previous.info.status == "FINISHED"):
            if previous.info.status == "RUNNING" and not is_dead(previous):
                raise TrainingError(
                    f"run {previous.info.run_id} ({cfg.run_name}) is RUNNING in another live process "
                    f"(heartbeat {heartbeat_age_s(previous):.0f} s ago, {previous.data.tags.get(DRIVER_TAG, 'unknown')}); "
                    f"wait for it, or stop it and retry after {STALE_AFTER_S:.0f} s"
                )
            # runs recorded before identity tags used the bare run name as Ray Train's
            train_name = previous.data.tags.get(identity.TRAIN_NAME_TAG) or cfg.run_name
            record = cls(uri, previous.info.run_id, label, resumed=True, train_name=train_name)
            record._reopen(previous)
            extra = dict(tags)  # no fingerprint tag: an old run stays visibly unverified
        else:
            new_tags = {runs.RUN_NAME_TAG: cfg.run_name, KIND_TAG: kind, identity.FINGERPRINT_TAG: fp, **tags}
            train_name = identity.train_name(cfg.run_name, fp)
            if previous is not None:  # --rerun of a FINISHED run: its own Ray Train storage
                train_name = f"{train_name}-{int(time.time()) % 10**6:06d}"
            new_tags[identity.TRAIN_NAME_TAG] = train_name
            if parent_run_id:
                new_tags["mlflow.parentRunId"] = parent_run_id
            run = mlflow_client.create_run(exp_id, run_name=cfg.run_name, tags={k: redact(str(v)) for k, v in new_tags.items()})
            record = cls(uri, run.info.run_id, label, resumed=False, train_name=train_name)
            if previous is not None:
                runs.set_tags(uri, previous.info.run_id, {identity.SUPERSEDED_TAG: run.info.run_id})
            extra = {}
        if parent_run_id:
            extra.update({"mlflow.parentRunId": parent_run_id, identity.member_tag(parent_run_id): "trained"})
        record._start_heartbeat(extra)
        return record

    @classmethod
    def attach(cls, uri: str, run_id: str, label: str, *, resumed: bool) -> "RunRecord":
        """Hold a run opened elsewhere (a sweep's parent): heartbeat and driver tag while this process lives."""
        record = cls(uri, run_id, label, resumed=resumed, train_name="")
        record._start_heartbeat({})
        return record

    def _reopen(self, previous) -> None:
        """Move the last attempt's end into ``raysys.attempts`` and mark the run RUNNING again."""
        attempts = _attempts(previous)
        status = previous.info.status
        reason = previous.data.tags.get(runs.FAILURE_TAG, "")
        if status == "RUNNING":  # its driver died without closing it
            status, reason = "FAILED", f"the driver died without closing the run (last heartbeat {previous.data.tags.get(HEARTBEAT_TAG, 'never')})"
        ended = previous.info.end_time
        attempts.append({
            "attempt": len(attempts) + 1, "status": status, "reason": reason,
            "ended": dt.datetime.fromtimestamp(ended / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ended else "",
        })
        mlflow_client = runs.client(self.uri)
        mlflow_client.update_run(self.run_id, status="RUNNING")
        runs.set_tags(self.uri, self.run_id, {ATTEMPTS_TAG: json.dumps(attempts[-MAX_ATTEMPTS_KEPT:])})
        runs.delete_tag(self.uri, self.run_id, runs.FAILURE_TAG)

    def log_config(self, cfg: DictConfig) -> None:
        """Params and ``config.yaml``, whichever of them this run lacks (an earlier attempt may have died first)."""
        run = runs.client(self.uri).get_run(self.run_id)
        flat = flatten(cfg)
        missing = {k: v for k, v in flat.items() if k not in run.data.params}
        if missing:
            runs.log_params(self.uri, self.run_id, missing)
        if not runs.has_artifact(self.uri, self.run_id, CONFIG_ARTIFACT):
            runs.log_text(self.uri, self.run_id, redact(to_yaml(cfg)), CONFIG_ARTIFACT)

    # -- alive -------------------------------------------------------------------------
    def _start_heartbeat(self, tags: Dict[str, Any]) -> None:
        runs.set_tags(self.uri, self.run_id, {**tags, DRIVER_TAG: f"{socket.gethostname()}:{os.getpid()}", HEARTBEAT_TAG: now_iso()})

        def beat() -> None:
            while not self._beat_stop.wait(HEARTBEAT_EVERY_S):
                try:
                    runs.set_tags(self.uri, self.run_id, {HEARTBEAT_TAG: now_iso()})
                except Exception as exc:  # noqa: BLE001 - a missed beat is retried; the run goes on
                    log.debug("heartbeat of run %s failed: %s", self.run_id, exc)

        self._beat = threading.Thread(target=beat, name="raysys-heartbeat", daemon=True)
        self._beat.start()

    def _stop_heartbeat(self) -> None:
        self._beat_stop.set()

    # -- closing -----------------------------------------------------------------------
    def close(self, status: str, reason: str = "") -> None:
        """End the run once: FINISHED clears any failure reason; FAILED/KILLED carry ``reason``."""
        if self.closed:
            return
        self._stop_heartbeat()
        runs.finish(self.uri, self.run_id, status, reason)
        self.closed = True

    @contextmanager
    def guard(self) -> Iterator["RunRecord"]:
        """Close the run on any way out of the block that is not :meth:`close`; SIGTERM included.

        Errors other than ours become a one-line :class:`TrainingError` "<label> failed: <root cause>".
        """
        with terminate_on_sigterm():
            try:
                yield self
            except BaseException as exc:
                terminated = sigterm_received(exc)
                if terminated is not None:
                    self.close("KILLED", "terminated (SIGTERM)")
                    raise terminated from None
                if isinstance(exc, KeyboardInterrupt):
                    self.close("KILLED", "interrupted by the user (Ctrl-C)")
                    raise
                if isinstance(exc, RaysysError):
                    self.close("FAILED", str(exc))
                    raise
                reason = root_cause(exc)
                self.close("FAILED", reason)
                if isinstance(exc, Exception):
                    raise TrainingError(f"{self.label} failed: {reason}") from exc
                raise
            finally:
                self._stop_heartbeat()


_sigterm = threading.Event()  # set by terminate_on_sigterm's handler


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread (Ray's own handler would exit on the spot)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        _sigterm.set()
        raise Terminated(128 + signum)

    _sigterm.clear()
    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def sigterm_received(exc: BaseException) -> Optional[Terminated]:
    """The :class:`Terminated` that ``exc`` stands for, if SIGTERM came; else None.

    Raised inside ``ray.get``, a signal handler's exception does not come out as
    itself: Ray turns it into ``SystemExit(1)`` (or a plain ``KeyboardInterrupt``).
    """
    if isinstance(exc, Terminated):
        return exc
    if _sigterm.is_set() and isinstance(exc, (SystemExit, KeyboardInterrupt)):
        return Terminated(128 + signal.SIGTERM)
    return None


@contextmanager
def guarded(record: Optional[RunRecord], label: str) -> Iterator[None]:
    """``record.guard()``, or the same SIGTERM handling and one-line errors without a run."""
    if record is not None:
        with record.guard():
            yield
        return
    with terminate_on_sigterm():
        try:
            yield
        except (RaysysError, KeyboardInterrupt, SystemExit) as exc:
            terminated = sigterm_received(exc)
            if terminated is not None and terminated is not exc:
                raise terminated from None
            raise
        except Exception as exc:
            raise TrainingError(f"{label} failed: {root_cause(exc)}") from exc
