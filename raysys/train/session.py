"""Connecting to Ray: the cluster of ``ray job submit``, or an embedded local one.

The local Ray of one command is closed to the network and to the machine's other Rays:

- every server of it (GCS, raylet, object manager, workers, dashboard and its agents)
  listens on 127.0.0.1 only;
- it uses Ray's token authentication (``RAY_AUTH_MODE=token``) with a token made for
  this command (``RAY_AUTH_TOKEN``, 256 random bits, in this process's environment
  only: never printed, never written to a file or a run; ``raysys.track.uri.redact``
  blanks it like any ``*_TOKEN``), unless the user gave one (``RAY_AUTH_TOKEN`` or
  ``RAY_AUTH_TOKEN_PATH``);
- its processes find *their* Ray by address (``RAY_API_SERVER_ADDRESS``, its own
  dashboard port), never by scanning the machine for "the" local Ray, so commands
  running side by side do not see each other;
- its session files live in a private per-user folder (``/tmp/raysys-<uid>``, mode 0700).

A start that fails raises one line (``ClusterError``) naming Ray's log folder; what Ray
logged while failing is kept out of stderr.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from raysys.console import rayout
from raysys.errors import ClusterError, ConfigError
from raysys.track.uri import redact

# Ray starts its worker processes at a niceness 15 above the driver's (to keep its own
# daemons responsive on busy cluster nodes). In the local Ray of one `raysys train`
# the Ray Train workers *are* the job: at nice +15 they yield the CPU to every other
# process on the machine, where a plain PyTorch script would not (docs/BENCHMARKS.md,
# `bench train-overhead`). 0 keeps them at the driver's own priority.
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}
# Ray Train's controller polls its workers every 2 s (sized for large clusters), so a
# run ends up to 2 s after its last epoch; on a local Ray with a few workers a
# quarter-second poll costs nothing. Set before Ray starts, so Tune's trial
# processes inherit it too; an explicit setting in the environment wins.
LOCAL_TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}


LOCAL_HOST = "127.0.0.1"
# The dashboard port is chosen free just before Ray binds it; another process may take
# it in between (Ray then refuses an explicit port): choose again, this many times.
DASHBOARD_PORT_ATTEMPTS = 3
# Ray's unix socket paths (<temp>/session_<date>_<pid>/sockets/plasma_store, ~70 chars
# below the temp folder) must stay under 107 bytes.
MAX_TEMP_ROOT_LENGTH = 36


def ensure_ray(min_cpus: int = 0, *, dashboard_port: int | None = None) -> None:
    """Join the cluster in RAY_ADDRESS, or start a new local Ray sized for this machine.

    A local Ray advertises one logical CPU more than the machine has (and at
    least ``min_cpus``): the Train workers take theirs and Ray Data's read tasks
    still find a slot, instead of waiting forever on a 2-core laptop. It listens
    on loopback only, requires its token, and serves its dashboard on
    ``dashboard_port`` (default: a free port). Raises ``ClusterError`` (one line)
    when it does not start.
    """
    import ray
    from ray._private import auto_init_hook

    if ray.is_initialized():
        return
    # raysys connects explicitly, here: a Ray call after shutdown (a thread still in
    # fit() when the command stops) must fail, not start a new local Ray on the way out.
    auto_init_hook.enable_auto_connect = False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        take_over_ray_output()
        return
    num_cpus = max((os.cpu_count() or 1) + 1, min_cpus)
    # On a busy laptop the dashboard's modules can take longer than Ray's 30 s to start.
    os.environ.setdefault("RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT", "180")
    for key, value in LOCAL_TRAIN_ENV.items():
        os.environ.setdefault(key, value)
    _close_local_ray_to_others()
    temp_dir = local_temp_dir()
    for attempt in range(1, DASHBOARD_PORT_ATTEMPTS + 1):
        port = dashboard_port or free_local_port()
        # Every process of this Ray (they inherit the environment) asks this dashboard,
        # and only it, for the cluster's state: Ray's own discovery scans the machine's
        # processes for "the" local GCS and fails when it finds several ("Found multiple
        # active Ray instances", Ray Train's PlacementGroupCleaner, Ray Data's detectors).
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://{LOCAL_HOST}:{port}"
        held = _HeldRecords()
        try:
            with held.holding():
                # The dashboard serves the state API that Ray Train's placement-group
                # cleaner polls; without it the cleaner logs errors.
                # LOCAL_SYSTEM_CONFIG: the workers train at this command's priority, as a plain script would.
                ray.init(
                    address="local", num_cpus=num_cpus, include_dashboard=True,
                    dashboard_host=LOCAL_HOST, dashboard_port=port, _node_ip_address=LOCAL_HOST,
                    _temp_dir=temp_dir, log_to_driver=True, configure_logging=False,
                    _system_config=LOCAL_SYSTEM_CONFIG,
                )
        except Exception as exc:  # noqa: BLE001 - Ray raises plain Exceptions (and ValueError, RuntimeError, ...)
            shutdown_quietly()
            if _port_taken(exc) and dashboard_port is None and attempt < DASHBOARD_PORT_ATTEMPTS:
                continue
            raise ClusterError(_start_failure(exc, held.records, temp_dir)) from None
        held.replay()
        take_over_ray_output()
        return


def take_over_ray_output() -> None:
    """Ray's console output goes to the command's log file, not the console (raysys/console/rayout.py)."""
    rayout.take_over()


def mute_ray_console() -> None:
    """Stop printing the workers' forwarded output here; Ray itself keeps running.

    Shutting Ray down instead would pull it from under a thread still in ``fit()``.
    """
    from ray._private.ray_logging import global_worker_stdstream_dispatcher

    global_worker_stdstream_dispatcher.remove_handler("ray_print_logs")


def _close_local_ray_to_others() -> None:
    """Loopback and token authentication for the Ray this process is about to start."""
    from ray._private import ray_constants

    # Ray resolves a node IP of 127.0.0.1 to the machine's outward address (so that other
    # nodes could join), and then binds its servers there: unless "clusters" are off,
    # its switch for laptops. The environment carries it to Ray's own processes.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ["RAY_AUTH_MODE"] = "token"
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if token_path and not os.environ.get("RAY_AUTH_TOKEN"):
        try:
            readable = bool(Path(token_path).expanduser().read_text().strip())
        except OSError:
            readable = False
        if not readable:  # Ray would abort the process (a C++ check), not raise
            raise ClusterError(f"RAY_AUTH_TOKEN_PATH={token_path} is not a readable, non-empty token file")
    elif not os.environ.get("RAY_AUTH_TOKEN"):
        # Ray's own default (~/.ray/auth_token, written with the default umask, i.e. usually
        # readable by every user, and shared by every local Ray of the user) is not used:
        # one token per command, in this process's environment only.
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    # This process read RAY_AUTH_MODE (into Ray's C++ config) and maybe the token when
    # it imported ray, before the lines above: read both again, as Ray's own tests do.
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def local_temp_dir() -> str | None:
    """Ray's temp folder for a local Ray: a private per-user one (None: RAY_TMPDIR decides)."""
    if os.environ.get("RAY_TMPDIR"):
        return None
    base = os.environ.get("TMPDIR") or "/tmp"
    root = os.path.join(base, f"raysys-{os.getuid()}")
    if len(root) > MAX_TEMP_ROOT_LENGTH:
        root = f"/tmp/raysys-{os.getuid()}"
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ClusterError(f"cannot create Ray's temp folder {root}: {exc.strerror}") from None
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        # Someone else's (or a link): never put this Ray's sockets there.
        return tempfile.mkdtemp(prefix="raysys-", dir="/tmp")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(root, 0o700)
    return root


def free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        return sock.getsockname()[1]


def _port_taken(exc: BaseException) -> bool:
    return isinstance(exc, ValueError) and "already occupied" in str(exc)


def shutdown_quietly() -> None:
    """Stop (or leave) this process's Ray; its forwarded worker output stops with it."""
    import ray

    held = _HeldRecords()
    try:
        with held.holding():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - a half-started Ray may fail to stop; its processes die with us
        pass


_SESSION_DIR = re.compile(r"(/[^\s'\"]*/session_[0-9][\w.-]*)")


def _start_failure(exc: BaseException, records: list[logging.LogRecord], temp_dir: str | None) -> str:
    """One line: why the local Ray did not start, and where its logs are."""
    from ray._private import ray_constants

    messages = [_message(r) for r in records] + [str(exc)]
    text = "\n".join(messages)
    if "Failed to start the dashboard" in text or "Failed to start a dashboard" in text:
        reason = (
            f"its dashboard did not start within {ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S:g} s "
            "(a loaded machine? raise RAY_DASHBOARD_STARTUP_TIMEOUT_S, or try again)"
        )
    else:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__
    session = _SESSION_DIR.search(text)
    if session:
        logs = f"{session.group(1)}/logs"
    else:
        logs = os.path.join(temp_dir or os.environ.get("RAY_TMPDIR") or "/tmp/ray", "session_latest", "logs")

    return redact(f"the local Ray did not start: {reason}; Ray's logs: {logs}")


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record must not hide the real failure
        return str(record.msg)


class _HeldRecords:
    """Ray's log records of one step, held back from stderr; replayed if the step succeeds.

    ``ray.init(configure_logging=False)`` empties the "ray" logger's handlers (it does
    not propagate), so what Ray logs in the driver reaches ``logging.lastResort`` (plain
    lines on stderr): the step swaps that for a holder.
    """

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []

    @contextmanager
    def holding(self):
        records = self.records

        class _Hold(logging.Handler):
            def emit(self, record):
                records.append(record)

        saved = logging.lastResort
        logging.lastResort = _Hold(logging.WARNING)
        try:
            yield records
        finally:
            logging.lastResort = saved

    def replay(self) -> None:
        handler = logging.lastResort
        for record in self.records:
            if handler is not None and record.levelno >= handler.level:
                handler.handle(record)


def resolve_storage_path(configured: str) -> str:
    """An absolute local path or a URI for Ray Train's run storage (default ./runs)."""
    if "://" in configured:
        return configured
    path = Path(configured or "runs").expanduser()
    return str(path.resolve())


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 0))


def check_capacity(num_workers: int, cpus_per_worker: int, use_gpu: bool, gpus_per_worker: float = 1.0) -> None:
    """Refuse a worker count the cluster can never hold (the run would wait forever)."""
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if num_workers * cpus_per_worker > cpus:
        raise ConfigError(
            f"scaling.num_workers={num_workers} x scaling.cpus_per_worker={cpus_per_worker} needs "
            f"{num_workers * cpus_per_worker} CPUs; the cluster has {cpus:g}"
        )
    needed = num_workers * float(gpus_per_worker)
    if use_gpu and needed > gpus:
        raise ConfigError(f"scaling.num_workers={num_workers} x scaling.gpus_per_worker={gpus_per_worker:g} needs "
                          f"{needed:g} GPUs; the cluster has {gpus:g}")


def wants_gpu(setting: str) -> bool:
    """scaling.use_gpu: "auto" uses GPUs when the cluster has any."""
    value = str(setting).lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    if value != "auto":
        raise ConfigError(f"bad value for 'scaling.use_gpu': {setting!r} is not one of ['auto', 'false', 'true']")
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def worker_scaling(scaling, use_gpu: bool):
    """Ray Train's ScalingConfig for the ``scaling`` config section: workers, CPUs each, GPU, placement."""
    import ray.train

    gpus = {"GPU": float(getattr(scaling, "gpus_per_worker", 1.0))} if use_gpu else {}  # a fraction shares a GPU
    return ray.train.ScalingConfig(
        num_workers=scaling.num_workers, use_gpu=use_gpu,
        resources_per_worker={"CPU": scaling.cpus_per_worker, **gpus},
        placement_strategy=scaling.placement_strategy,
    )
