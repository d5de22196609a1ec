"""Security defaults: secrets never reach MLflow; cluster scripts listen on loopback only."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

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
