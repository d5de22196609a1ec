"""`make demo`'s pipeline, in full: slow (several minutes on 2 cores)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FASHION_DIR, REPO


@pytest.mark.slow
def test_demo_reaches_the_promised_accuracy(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.demo", "--fashion-dir", str(FASHION_DIR), "--shards", str(tmp_path / "shards")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"run_id", "test_accuracy", "tracking_uri"} <= set(last)
    assert last["test_accuracy"] >= 0.88
    assert "mlflow ui --backend-store-uri" in result.stdout
