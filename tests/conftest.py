"""Shared fixtures: real Fashion-MNIST shards, one local Ray for the session, a scratch cwd."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

FASHION_DIR = Path(os.environ.get("RAYSYS_FASHION_DIR", "/usr/share/datasets/fashion-mnist"))
REPO = Path(__file__).resolve().parents[1]

# Quiet Ray Data's progress bars in test logs.
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
# A loaded 2-core machine starts the dashboard's modules slower than Ray's 30 s default.
os.environ.setdefault("RAY_DASHBOARD_SUBPROCESS_MODULE_WAIT_READY_TIMEOUT", "180")
# ... and the dashboard process itself slower than the 60 s ray.init waits (read when ray is imported).
os.environ.setdefault("RAY_DASHBOARD_STARTUP_TIMEOUT_S", "300")
# The session's Ray is started by ray.init, not ensure_ray: give it the same Ray Train settings.
from raysys.train.session import LOCAL_TRAIN_ENV  # noqa: E402

for _key, _value in LOCAL_TRAIN_ENV.items():
    os.environ.setdefault(_key, _value)
# Fix the main thread's torch thread count now, as a Ray Train worker does: in-process
# Ray Data iteration lowers torch's default for later threads to 1 (raysys.data.stream).
import torch  # noqa: E402

torch.get_num_threads()


@pytest.fixture(scope="session")
def fashion_shards(tmp_path_factory) -> Path:
    """The real Fashion-MNIST (Debian's dataset-fashion-mnist) as Parquet shards."""
    if not FASHION_DIR.is_dir():
        pytest.fail(f"{FASHION_DIR} is missing: `make test` installs Debian's dataset-fashion-mnist")
    from pipelines.prepare import prepare

    out = tmp_path_factory.mktemp("shards") / "fashion-mnist"
    prepare("fashion-mnist", str(FASHION_DIR), str(out))
    return out


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for every in-process test (starting Ray costs seconds)."""
    import ray

    for attempt in range(2):  # a node that timed out starting on a loaded machine gets one more try
        try:
            ray.init(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1", configure_logging=False,
                     log_to_driver=False)
            break
        except Exception as exc:
            ray.shutdown()
            if attempt or "timed out during startup" not in str(exc):
                raise
    yield ray
    ray.shutdown()


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A scratch working directory: runs/ and mlflow.db land here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600):
    """``python -m raysys ...`` in a subprocess; returns the CompletedProcess."""
    import subprocess

    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "raysys", *args], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


def cifar10_shards(root: Path, *, train_per_batch: int, test: int = 64) -> Path:
    """Random images in the real CIFAR-10 pickle format under ``root``, prepared as shards (5 train batches)."""
    from pipelines.prepare import prepare
    from raysys.bench.fixtures import write_cifar10

    write_cifar10(root / "source", train_per_batch=train_per_batch, test=test)
    prepare("cifar10", str(root / "source"), str(root / "shards"))
    return root / "shards"
