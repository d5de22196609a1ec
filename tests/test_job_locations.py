"""Relative paths of a command that runs as a Ray job, in Ray's copy of the working directory."""
from __future__ import annotations

import pytest

from raysys.config import load_config
from raysys.errors import ConfigError
from raysys.train.locations import SUBMIT_DIR_ENV, job_package_dir, pin_locations

PRESET = "cifar-resnet/fashion-mnist-resnet20"


@pytest.fixture
def in_job_package(tmp_path, monkeypatch):
    package = tmp_path / "runtime_resources" / "working_dir_files" / "_ray_pkg_0123abcd4567ef89"
    package.mkdir(parents=True)
    monkeypatch.chdir(package)
    monkeypatch.delenv(SUBMIT_DIR_ENV, raising=False)
    return package


def test_outside_a_job_relative_paths_resolve_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = pin_locations(load_config(PRESET, ["data.path=data/shards"]))
    assert job_package_dir() is None
    assert cfg.data.path == str(tmp_path / "data" / "shards")
    assert cfg.tracking.uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cfg.checkpoint.storage_path == str(tmp_path / "runs")


def test_in_a_job_a_relative_input_missing_from_the_upload_is_refused_with_the_way_out(in_job_package):
    with pytest.raises(ConfigError) as err:
        pin_locations(load_config(PRESET, ["data.path=data/shards", "tracking.uri=sqlite:////abs/mlflow.db",
                                           "checkpoint.storage_path=/abs/runs"]))
    message = str(err.value)
    assert "data.path=data/shards is relative" in message and str(in_job_package) in message
    assert "data.path=$PWD/data/shards" in message and "does not exist" in message and SUBMIT_DIR_ENV in message and "\n" not in message


def test_in_a_job_outputs_would_be_lost_so_a_relative_default_is_refused(in_job_package, tmp_path):
    (in_job_package / "data").mkdir()  # an input uploaded with --working-dir is found in the copy
    with pytest.raises(ConfigError, match=r"tracking.uri=sqlite:///mlflow.db is relative.*would be written and lost"):
        pin_locations(load_config(PRESET, ["data.path=data", f"checkpoint.storage_path={tmp_path / 'runs'}"]))
    cfg = pin_locations(load_config(PRESET, ["data.path=data", f"checkpoint.storage_path={tmp_path / 'runs'}",
                                             f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]))
    assert cfg.data.path == str(in_job_package / "data")


def test_in_a_job_relative_paths_resolve_against_the_submitting_directory_when_given(in_job_package, tmp_path, monkeypatch):
    submit = tmp_path / "project"
    monkeypatch.setenv(SUBMIT_DIR_ENV, str(submit))
    cfg = pin_locations(load_config(PRESET, ["data.path=data/shards"]))
    assert cfg.data.path == str(submit / "data" / "shards")
    assert cfg.tracking.uri == f"sqlite:///{submit / 'mlflow.db'}"
    assert cfg.checkpoint.storage_path == str(submit / "runs")
