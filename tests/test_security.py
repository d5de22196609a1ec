"""Security defaults: secrets never reach MLflow; cluster scripts listen on loopback only."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from raysys.track.runs import param_items
from raysys.track.uri import redact
from tests.conftest import REPO

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "sentinel-aws-8c1f2e",
    "MLFLOW_TRACKING_PASSWORD": "sentinel-mlflow-77d0",
    "HF_TOKEN": "sentinel-hf-4b9a0c",
    "WANDB_API_KEY": "sentinel-wandb-19e3",
}


@pytest.fixture
def secret_env(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


def test_redact_drops_uri_credentials_and_secret_env_values(secret_env):
    assert redact("http://alice:pw@mlflow:5000") == "http://***@mlflow:5000"
    assert redact("s3://bucket/runs?token=sentinel-hf-4b9a0c") == "s3://bucket/runs?token=***"
    assert redact("plain text") == "plain text"


def test_short_or_path_like_env_values_are_not_treated_as_secrets(monkeypatch):
    monkeypatch.setenv("SOME_TOKEN", "true")  # too short to be a secret: never blank out common words
    monkeypatch.setenv("PASSWORD_STORE_DIR", "/home/alice/.password-store")  # where a secret lives
    assert redact("true /home/alice/.password-store") == "true /home/alice/.password-store"


def test_params_carrying_a_secret_are_redacted(secret_env):
    params = {p.key: p.value for p in param_items({"data.path": "s3://b/x?sig=sentinel-aws-8c1f2e", "train.lr": 0.1})}
    assert params == {"data.path": "s3://b/x?sig=***", "train.lr": "0.1"}


def _all_logged_text(client):
    """Every param, tag and text artifact of every run in the store."""
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    texts = []
    for run in client.search_runs(experiment_ids):
        texts += [f"{k}={v}" for k, v in run.data.params.items()]
        texts += [f"{k}={v}" for k, v in run.data.tags.items()]
        for artifact in client.list_artifacts(run.info.run_id):
            if artifact.path.endswith((".yaml", ".md", ".csv", ".txt", ".json")):
                texts.append(Path(client.download_artifacts(run.info.run_id, artifact.path)).read_text())
    return texts


def test_no_secret_env_value_reaches_mlflow(secret_env, fashion_shards, ray_cluster, workdir):
    """A tiny run with secrets in the environment and in a config value: none reaches MLflow."""
    from mlflow.tracking import MlflowClient

    from raysys.cli.main import main

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    code = main([
        "train", "cifar-resnet/fashion-mnist-resnet20", f"data.path={fashion_shards}", "data.limit=128",
        "data.test_limit=64", "train.epochs=1", "train.batch_size=64", "scaling.num_workers=1",
        f"tracking.uri={uri}", "run_name=secrets",
        # A secret pasted into a config value must still be redacted.
        f"checkpoint.storage_path={workdir / 'runs-sentinel-hf-4b9a0c'}",
    ])
    assert code == 0
    texts = _all_logged_text(MlflowClient(tracking_uri=uri))
    assert any("train.epochs=1" in t for t in texts)  # the scan does see the params
    assert any(t.endswith("runs-***") for t in texts)
    leaks = [t for t in texts for secret in SECRETS.values() if secret in t]
    assert leaks == []


BIND_FLAGS = re.compile(r"--(?:host|dashboard-host|node-ip-address|ray-client-server-host|dashboard-agent-listen-host)[ =](\S+)")


def test_cluster_scripts_listen_on_loopback_by_default():
    scripts = sorted((REPO / "cluster").glob("*.sh"))
    assert scripts, "cluster/*.sh missing"
    for script in scripts:
        text = script.read_text()
        assert "0.0.0.0" not in text, f"{script.name} binds 0.0.0.0"
        for value in BIND_FLAGS.findall(text):
            assert value.strip("\"'") in ("127.0.0.1", "$BIND_HOST", "${BIND_HOST}"), f"{script.name}: {value}"
    assert 'BIND_HOST="${RAYSYS_BIND_HOST:-127.0.0.1}"' in (REPO / "cluster" / "common.sh").read_text()


def test_local_cluster_uses_token_auth_and_starts_no_ray_client_server():
    common = (REPO / "cluster" / "common.sh").read_text()
    up = (REPO / "cluster" / "local-up.sh").read_text()
    assert "export RAY_AUTH_MODE=token" in common and 'export RAY_AUTH_TOKEN_PATH="$TOKEN_FILE"' in common
    assert "--ray-client-server-port" not in up  # the flag starts a Ray Client server
    starts = re.findall(r"start_tracked ray-\S+ (.*?) start ", up, re.S)
    assert len(starts) == 2 and all('python "$REPO/cluster/ray_start.py"' in s for s in starts), starts
    assert "RAY_AUTH_MODE=token" in up and "RAY_AUTH_TOKEN_PATH" in up  # .cluster/env for the clients
    assert "$(<\"$TOKEN_FILE\")" in up  # the token is read by the shell, never put on a command line


def test_cluster_manifests_enable_token_authentication():
    launcher = (REPO / "cluster" / "ray-cluster.yaml").read_text()
    assert "RAY_AUTH_MODE=token" in launcher
    raycluster = yaml.safe_load((REPO / "cluster" / "kuberay-raycluster.yaml").read_text())
    assert raycluster["spec"]["authOptions"] == {"mode": "token"}
    rayjob = yaml.safe_load((REPO / "cluster" / "kuberay-rayjob.yaml").read_text())
    assert rayjob["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}


def test_secret_values_survive_another_thread_changing_the_environment():
    """MLflow's telemetry thread deletes a variable while redact() reads the environment:
    that raised KeyError at random (a sweep trial failed so)."""
    import sys
    import threading
    import time

    from raysys.track.uri import secret_values

    stop = threading.Event()

    def churn():
        while not stop.is_set():
            os.environ["_RAYSYS_RACE_TOKEN"] = "sentinel-race-5e21"
            del os.environ["_RAYSYS_RACE_TOKEN"]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    calls, deadline = 0, time.monotonic() + 1.5
    try:
        while time.monotonic() < deadline:
            secret_values()
            redact("http://u:pw@host sentinel-race-5e21")
            calls += 1
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
        os.environ.pop("_RAYSYS_RACE_TOKEN", None)
    assert calls > 100


def test_local_ray_token_is_redacted(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0f" * 32)
    assert redact(f"Bearer {'0f' * 32}") == "Bearer ***"


# A child process: what raysys's driver does (install_redaction at the start), then the
# ways a tracking URI with a password reached the terminal.
REDACTION_CHILD = r'''
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")  # as raysys.cli.main, before
early = logging.getLogger("mlflow.tracking.early")
from raysys.track.quiet import install_redaction
install_redaction()
uri = "http://alice:sentinel-pw-91c3@127.0.0.1:5999"
sys.stdout.write(f"\U0001F3C3 View run r at: {uri}/#/experiments/1/runs/abc\n")  # MLflow's own write
print(f"tracking at {uri}")
early.info("logger made before the install: %s", uri)
logging.getLogger("ray.some.module").warning("ray logger: %s", uri)
try:
    raise RuntimeError(f"cannot reach {uri}")
except RuntimeError:
    logging.getLogger("raysys").exception("failed")
print(f"HF {sys.argv[1]}", file=sys.stderr)
'''


def test_install_redaction_keeps_credentials_out_of_stdout_and_stderr(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(REDACTION_CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_TOKEN": "sentinel-hf-4b9a0c"}
    proc = subprocess.run([sys.executable, str(script), "sentinel-hf-4b9a0c"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "sentinel-pw-91c3" not in out and "sentinel-hf-4b9a0c" not in out, out
    assert "View run r at: http://***@127.0.0.1:5999/#/experiments/1/runs/abc" in proc.stdout
    assert "tracking at http://***@127.0.0.1:5999" in proc.stdout
    assert out.count("http://***@127.0.0.1:5999") == 5, out  # two writes, two records, the traceback
    assert "HF ***" in proc.stderr


MLFLOW_CHILD = r'''
import sys
from raysys.track.quiet import install_redaction
install_redaction()
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
run = client.create_run(client.create_experiment("redaction"))
client.set_terminated(run.info.run_id)  # MLflow writes "View run ... at: <uri>/#/..." to stdout
'''


@pytest.mark.slow
def test_mlflow_view_run_lines_carry_no_password(tmp_path):
    """Against a real MLflow server, a tracking URI with user:password@."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--artifacts-destination", str(tmp_path / "art")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        script = tmp_path / "child.py"
        script.write_text(MLFLOW_CHILD)
        proc = subprocess.run(
            [sys.executable, str(script), f"http://alice:sentinel-pw-91c3@127.0.0.1:{port}"],
            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "View run" in proc.stdout and f"http://***@127.0.0.1:{port}/#/experiments/" in proc.stdout, proc.stdout
    assert "sentinel-pw-91c3" not in proc.stdout + proc.stderr
