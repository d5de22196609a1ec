"""Connecting to Ray: the cluster of ``ray job submit``, or an embedded local one."""
from __future__ import annotations

import os
from pathlib import Path

from raysys.errors import ConfigError

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


def ensure_ray(min_cpus: int = 0) -> None:
    """Join the cluster in RAY_ADDRESS, or start a new local Ray sized for this machine.

    A local Ray advertises one logical CPU more than the machine has (and at
    least ``min_cpus``): the Train workers take theirs and Ray Data's read tasks
    still find a slot, instead of waiting forever on a 2-core laptop.
    """
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        return
    num_cpus = max((os.cpu_count() or 1) + 1, min_cpus)
    # On a busy laptop the dashboard's modules can take longer than Ray's 30 s to start.
    os.environ.setdefault("RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT", "180")
    for key, value in LOCAL_TRAIN_ENV.items():
        os.environ.setdefault(key, value)
    # The dashboard (on 127.0.0.1) serves the state API that Ray Train's
    # placement-group cleaner polls; without it the cleaner logs errors.
    # LOCAL_SYSTEM_CONFIG: the workers train at this command's priority, as a plain script would.
    ray.init(
        address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True,
        configure_logging=False, _system_config=LOCAL_SYSTEM_CONFIG,
    )


def resolve_storage_path(configured: str) -> str:
    """An absolute local path or a URI for Ray Train's run storage (default ./runs)."""
    if "://" in configured:
        return configured
    path = Path(configured or "runs").expanduser()
    return str(path.resolve())


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 0))


def check_capacity(num_workers: int, cpus_per_worker: int, use_gpu: bool) -> None:
    """Refuse a worker count the cluster can never hold (the run would wait forever)."""
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if num_workers * cpus_per_worker > cpus:
        raise ConfigError(
            f"scaling.num_workers={num_workers} x scaling.cpus_per_worker={cpus_per_worker} needs "
            f"{num_workers * cpus_per_worker} CPUs; the cluster has {cpus:g}"
        )
    if use_gpu and num_workers > gpus:
        raise ConfigError(f"scaling.num_workers={num_workers} needs {num_workers} GPUs; the cluster has {gpus:g}")


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

    return ray.train.ScalingConfig(
        num_workers=scaling.num_workers, use_gpu=use_gpu,
        resources_per_worker={"CPU": scaling.cpus_per_worker},
        placement_strategy=scaling.placement_strategy,
    )
