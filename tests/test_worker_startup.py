"""What a fresh Ray Train worker pays before its first batch (``bench train-overhead``)."""
from __future__ import annotations

import subprocess
import sys

from raysys.train import loop, session


def test_importing_the_catalog_does_not_import_torchvision():
    # torchvision loads torch._dynamo (seconds); every Ray Train worker imports raysys.catalog.
    code = "import sys, raysys.catalog; print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_local_ray_runs_its_workers_at_the_drivers_priority(monkeypatch):
    import ray

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    session.ensure_ray(min_cpus=3)
    assert calls[0]["_system_config"]["worker_niceness"] == 0 and calls[0]["num_cpus"] >= 3


class FakeRuns:
    """raysys.track.runs with an in-memory MLflow: which calls the sink makes."""

    def __init__(self, logged=()):
        self.calls, self.logged = [], set(logged)

    def client(self, uri):
        self.calls.append(("client", uri))

    def logged_steps(self, uri, run_id, key):
        self.calls.append(("logged_steps", run_id))
        return sorted(self.logged)

    def log_metrics(self, uri, run_id, metrics, step):
        self.calls.append(("log_metrics", step))
        self.logged.add(step)


def test_metric_sink_opens_mlflow_in_the_background_and_logs_only_missing_epochs(monkeypatch):
    fake = FakeRuns(logged=[1])
    monkeypatch.setattr(loop, "runs", fake)
    sink = loop.MetricSink("sqlite:///x.db", "run-1")
    sink._opening.join(timeout=10)
    assert fake.calls == [("client", "sqlite:///x.db")]
    sink.sync([])  # a new run before its first epoch: nothing to ask MLflow
    assert len(fake.calls) == 1
    sink.sync([{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}])  # epoch 1 is logged already
    assert fake.calls[1:] == [("logged_steps", "run-1"), ("log_metrics", 2)]


def test_metric_sink_without_a_run_touches_no_mlflow(monkeypatch):
    fake = FakeRuns()
    monkeypatch.setattr(loop, "runs", fake)
    sink = loop.MetricSink("", "")
    sink.sync([{"epoch": 1}])
    assert fake.calls == [] and not sink._opening.is_alive()
