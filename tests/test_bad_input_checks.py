"""The checks behind issue 15's bad-input cases, one function at a time, none of them starting Ray.

tests/test_bad_input.py runs each case through ``python -m raysys``'s ``main`` (and
documents it in docs/bad-input.md); here the check functions are tried at their
edges: what they refuse, the one-line message naming key and allowed values,
what they accept, and that they leave nothing behind. Cases that need a driver
change not made yet (``pending`` in that table) are also run here against a
driver patched the way run.py must call the checks.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from raysys.config import load_config
from raysys.errors import CheckpointError, ConfigError, DataError
from raysys.train import preflight
from raysys.train.preflight import (
    check_local_capacity,
    check_plan,
    check_storage_writable,
    check_tracking_uri,
    check_values,
)

P = "cifar-resnet/fashion-mnist-resnet20"  # onecycle, 2 workers, batch 128
TEST_SHARD = "test-00000-of-00001.parquet"


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Nothing here may start Ray: ensure_ray and ray.init are tripwires."""
    import ray

    def reached(*args, **kwargs):
        raise AssertionError("Ray was started: the check must come first")

    monkeypatch.setattr(ray, "init", reached)
    monkeypatch.setattr("raysys.train.session.ensure_ray", reached)
    monkeypatch.setattr("raysys.driver.launch.ensure_ray", reached)
    monkeypatch.setattr("raysys.tune.sweep.ensure_ray", reached)


def cfg_of(*overrides: str, preset: str = P, tmp: Path = None):
    extra = [f"checkpoint.storage_path={tmp / 'runs'}", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}"] if tmp else []
    return load_config(preset, [*extra, *overrides])


def refused(error: type, call, *args, **kwargs) -> str:
    with pytest.raises(error) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# -- value ranges (check_values) -----------------------------------------------------------------
@pytest.mark.parametrize("key, value, allowed", [
    ("data.limit", -5, "must be >= 0; 0 = all rows"),
    ("data.test_limit", -1, "must be >= 0; 0 = all rows"),
    ("evaluate.limit", -3, "must be >= 0; 0 = all rows"),
    ("data.holdout", -1, "must be >= 0; 0 = evaluate on data.test_split"),
    ("train.accumulate_steps", 0, "must be >= 1"),
    ("train.eval_batch_size", -1, "must be >= 0; 0 = train.batch_size"),
    ("model.num_classes", -2, "must be >= 0; 0 = from the shards"),
    ("failure.max_failures", -2, "must be >= -1; -1 = retry forever"),
])
def test_out_of_range_values_name_key_and_minimum(tmp_path, key, value, allowed):
    message = refused(ConfigError, check_values, cfg_of(f"{key}={value}", tmp=tmp_path))
    assert message == f"bad value for '{key}': {value} ({allowed})"


@pytest.mark.parametrize("lr", ["-1", "0", ".nan", ".inf"])
def test_learning_rate_must_be_a_positive_number(tmp_path, lr):
    message = refused(ConfigError, check_values, cfg_of(f"train.lr={lr}", tmp=tmp_path))
    assert message.startswith("bad value for 'train.lr': ") and message.endswith("(must be a number > 0)")


def test_score_order_is_a_choice(tmp_path):
    message = refused(ConfigError, check_values, cfg_of("checkpoint.score_order=maximum", tmp=tmp_path))
    assert message.startswith("bad value for 'checkpoint.score_order': 'maximum' is not one of ['max', 'min']")


def test_every_shipped_preset_passes(tmp_path):
    from raysys.config import list_presets

    for info in list_presets():
        check_values(cfg_of(preset=info.name, tmp=tmp_path))


# -- the scheduler's params --------------------------------------------------------------------
def test_param_the_scheduler_does_not_read_lists_its_keys(tmp_path):
    message = refused(ConfigError, check_values, cfg_of("train.scheduler_params.warmup_epochs=5", tmp=tmp_path))
    assert message == ("train.scheduler_params.warmup_epochs is not used by train.scheduler=onecycle; "
                       "onecycle reads only ['div_factor', 'final_div_factor', 'pct_start']")


def test_misspelt_param_gets_a_suggestion(tmp_path):
    cfg = cfg_of("train.scheduler=cosine", "train.scheduler_params.eta_mn=0", tmp=tmp_path)
    message = refused(ConfigError, check_values, cfg)
    assert message == ("train.scheduler_params.eta_mn is not used by train.scheduler=cosine (did you mean: eta_min?); "
                       "cosine reads only ['eta_min', 'warmup_epochs']")


def test_params_inherited_from_the_preset_chain_pass(tmp_path):
    """A preset cannot delete what its base gives: a cosine preset over a step base carries step_size, unused."""
    cfg = cfg_of(preset="antialiased/scratch-mobilenet_v2_lpf4", tmp=tmp_path)
    assert cfg.train.scheduler == "epoch_cosine" and "step_size" in cfg.train.scheduler_params
    check_values(cfg)
    # Switching a step preset to cosine (legacy --cos_lr) keeps the preset's step_size: not the user's choice.
    step = "antialiased/scratch-resnet50_lpf4"
    assert cfg_of(preset=step).train.scheduler == "step"
    check_values(cfg_of("train.scheduler=cosine", "train.scheduler_params.eta_min=0.0", preset=step, tmp=tmp_path))
    # ... but a step_size given with cosine is the user's, and cosine ignores it.
    message = refused(ConfigError, check_values,
                      cfg_of("train.scheduler=cosine", "train.scheduler_params.step_size=10", preset=step, tmp=tmp_path))
    assert message.startswith("train.scheduler_params.step_size is not used by train.scheduler=cosine; ")


@pytest.mark.parametrize("override, allowed", [
    ("train.scheduler_params.pct_start=1.5", "a number between 0 and 1 (exclusive)"),
    ("train.scheduler_params.div_factor=0", "a number > 0"),
    ("train.scheduler_params.div_factor=abc", "a number > 0"),
])
def test_bad_param_values_name_what_is_allowed(tmp_path, override, allowed):
    message = refused(ConfigError, check_values, cfg_of(override, tmp=tmp_path))
    key, value = override.split("=")
    assert message.startswith(f"bad value for '{key}': ") and message.endswith(f"(must be {allowed})")


def test_milestones_and_step_size_are_whole_epochs(tmp_path):
    multistep = ("train.scheduler=multistep", "train.scheduler_params.gamma=0.1")
    check_values(cfg_of(*multistep, "train.scheduler_params.milestones=[2, 4]", tmp=tmp_path))
    assert "whole epoch numbers" in refused(
        ConfigError, check_values, cfg_of(*multistep, "train.scheduler_params.milestones=[2.5]", tmp=tmp_path))
    assert "(must be a whole number of epochs >= 1)" in refused(
        ConfigError, check_values, cfg_of("train.scheduler=step", "train.scheduler_params.step_size=0", tmp=tmp_path))


def test_scheduler_param_rules_cover_what_each_builder_reads(monkeypatch):
    """Every key a scheduler's builder reads has a rule there, and builds with values the rules accept."""
    from raysys.train import optim
    from raysys.train.preflight import check_scheduler

    read = []
    original = optim._param
    monkeypatch.setattr(optim, "_param", lambda cfg, key, default: (read.append(key), original(cfg, key, default))[1])
    accepted = {"warmup_epochs": 1, "eta_min": 0.0, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4,
                "step_size": 1, "gamma": 0.5, "milestones": [1]}
    for name, _ in optim.SCHEDULERS.items():
        rules = optim.scheduler_param_rules(name)
        cfg = load_config(P, [f"train.scheduler={name}"])
        cfg.train.scheduler_params = {k: v for k, v in accepted.items() if k in rules}
        check_scheduler(cfg)
        read.clear()
        optim.build_scheduler(cfg, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), steps_per_epoch=3)
        assert set(read) <= set(rules), (name, sorted(set(read) - set(rules)))


# -- tracking.uri ---------------------------------------------------------------------------------
@pytest.mark.parametrize("uri", [
    "", "sqlite:////tmp/mlflow.db", "file:///tmp/mlruns", "/tmp/mlruns", "mlruns", "http://127.0.0.1:5000",
    "https://mlflow.example.org", "postgresql://u@db/mlflow", "postgresql+psycopg2://u@db/mlflow",
    "mysql+pymysql://u@db/mlflow", "mssql://u@db/mlflow", "databricks", "databricks://profile", "databricks-uc", "uc",
])
def test_tracking_uris_mlflow_can_store_to(uri):
    check_tracking_uri(uri)


@pytest.mark.parametrize("uri, scheme", [
    ("ftp://alice:s3cret@example.org/mlflow", "ftp"), ("s3://bucket/mlruns", "s3"), ("postgres://db/x", "postgres"),
])
def test_unsupported_tracking_scheme_is_refused_without_its_password(uri, scheme):
    message = refused(ConfigError, check_tracking_uri, uri)
    assert message.startswith(f"bad value for 'tracking.uri': ")
    assert f"has the scheme '{scheme}://', which MLflow cannot track to; use empty (a local sqlite file" in message
    assert "http(s)://<server>" in message and "s3cret" not in message


def test_tracking_scheme_is_checked_only_when_tracking(tmp_path):
    check_values(cfg_of("tracking.enabled=false", "tracking.uri=ftp://x/y", f"checkpoint.storage_path={tmp_path}"))
    assert "tracking.uri" in refused(ConfigError, check_values, cfg_of("tracking.uri=ftp://x/y", f"checkpoint.storage_path={tmp_path}"))


# -- checkpoint.storage_path -------------------------------------------------------------------
def test_storage_path_that_does_not_exist_yet_passes_and_nothing_is_left(tmp_path):
    target = tmp_path / "a" / "b" / "runs"
    check_storage_writable(str(target))
    assert list(tmp_path.iterdir()) == [], "the probe created folders or left a file"


def test_uri_storage_paths_are_left_to_their_filesystem():
    check_storage_writable("s3://bucket/runs")
    check_storage_writable("gs://bucket/runs")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a read-only folder")
def test_read_only_storage_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        message = refused(ConfigError, check_storage_writable, str(folder / "runs"))
    finally:
        folder.chmod(0o700)
    assert message.startswith(f"bad value for 'checkpoint.storage_path': {folder / 'runs'} is not writable: "
                              f"cannot create a file in {folder} (its nearest existing folder): ")
    assert list(folder.iterdir()) == []


def test_storage_probe_failure_is_one_line(tmp_path, monkeypatch):
    """As root (where a chmod does not stop a write): the probe's OSError becomes the refusal."""
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(preflight.tempfile, "mkstemp", denied)
    message = refused(ConfigError, check_storage_writable, str(tmp_path))
    assert message == (f"bad value for 'checkpoint.storage_path': {tmp_path} is not writable: cannot create a file in it: "
                       "Permission denied; give a folder you can write, or a URI (s3://bucket/runs)")


def test_storage_under_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    message = refused(ConfigError, check_storage_writable, f"file://{tmp_path}/f/runs")
    assert message.startswith(f"bad value for 'checkpoint.storage_path': {tmp_path}/f/runs cannot be a folder: "
                              f"{tmp_path}/f is a file")


# -- capacity of the local machine --------------------------------------------------------------
@pytest.fixture
def local(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(preflight, "_ray_running", lambda: False)


def test_workers_beyond_the_local_cpus_are_refused(local):
    message = refused(ConfigError, check_local_capacity, cfg_of("scaling.num_workers=1000"), 2, 0)
    assert message == ("scaling.num_workers=1000 x scaling.cpus_per_worker=1 needs 1000 CPUs; this machine has 2 "
                       "(a local Ray keeps one slot more for Ray Data's reads): set scaling.num_workers <= 2, "
                       "or submit to a cluster (RAY_ADDRESS)")
    check_local_capacity(cfg_of("scaling.num_workers=2"), 2, 0)  # what ensure_ray's cpu + 1 slots hold
    assert "needs 3 CPUs" in refused(ConfigError, check_local_capacity, cfg_of("scaling.num_workers=3"), 2, 0)
    assert "set scaling.cpus_per_worker <= 2" in refused(
        ConfigError, check_local_capacity, cfg_of("scaling.num_workers=1", "scaling.cpus_per_worker=4"), 2, 0)


def test_default_machine_size_is_what_ensure_ray_counts(local, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    check_local_capacity(cfg_of("scaling.num_workers=3", "scaling.use_gpu=false"))
    assert "this machine has 3" in refused(ConfigError, check_local_capacity, cfg_of("scaling.num_workers=4", "scaling.use_gpu=false"))


def test_gpu_workers_need_a_gpu_each(local):
    message = refused(ConfigError, check_local_capacity, cfg_of("scaling.num_workers=2", "scaling.use_gpu=true"), 8, 1)
    assert message == ("scaling.num_workers=2 with scaling.use_gpu=true needs 2 GPUs; this machine has 1: "
                       "set scaling.num_workers <= 1 or scaling.use_gpu=false, or submit to a cluster (RAY_ADDRESS)")
    assert "this machine has 0: set scaling.use_gpu=false" in refused(
        ConfigError, check_local_capacity, cfg_of("scaling.num_workers=1", "scaling.use_gpu=true"), 8, 0)
    assert "needs 2 GPUs" in refused(ConfigError, check_local_capacity, cfg_of("scaling.num_workers=2", "scaling.use_gpu=auto"), 8, 1)
    check_local_capacity(cfg_of("scaling.num_workers=2", "scaling.use_gpu=auto"), 8, 0)  # auto without GPUs: CPU
    check_local_capacity(cfg_of("scaling.num_workers=2", "scaling.use_gpu=false"), 8, 0)


def test_a_cluster_or_a_running_ray_is_not_checked_here(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    check_local_capacity(cfg_of("scaling.num_workers=1000"), 2, 0)
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setattr(preflight, "_ray_running", lambda: True)
    check_local_capacity(cfg_of("scaling.num_workers=1000"), 2, 0)


# -- the data plan --------------------------------------------------------------------------------
def plan(train_rows: int, test_rows: int, classes: int = 10):
    return SimpleNamespace(manifest={"num_classes": classes}, train_rows=train_rows, test_rows=test_rows)


def test_a_worker_without_a_training_row_is_refused():
    message = refused(ConfigError, check_plan, cfg_of("data.limit=1"), plan(1, 10000))
    assert message == ("the train stream has 1 rows for scaling.num_workers=2: each worker needs at least one row for a "
                       "batch; set data.limit >= 2 (0 = all rows), or fewer workers")
    # One row each is a batch (a short last batch is kept): allowed, even below the per-worker batch.
    check_plan(cfg_of("data.limit=2"), plan(2, 10000))
    message = refused(ConfigError, check_plan, cfg_of("scaling.num_workers=4"), plan(3, 10000))
    assert message.endswith("split 'train' has too few rows: set scaling.num_workers lower")


def test_a_worker_without_a_test_row_is_refused():
    message = refused(ConfigError, check_plan, cfg_of("data.test_limit=1"), plan(60000, 1))
    assert message == ("the test stream has 1 rows for scaling.num_workers=2: each worker needs at least one row to "
                       "evaluate; set data.test_limit >= 2 (0 = all rows), or fewer workers")
    check_plan(cfg_of("data.test_limit=2"), plan(60000, 2))


def test_global_batch_must_give_each_worker_a_row():
    message = refused(ConfigError, check_plan, cfg_of("train.batch_size=1"), plan(60000, 10000))
    assert message == ("bad value for 'train.batch_size': 1 is the global batch, split across scaling.num_workers=2 "
                       "workers (must be >= 2: at least one row per worker)")


def test_model_needs_every_class_of_the_data():
    message = refused(ConfigError, check_plan, cfg_of("model.num_classes=5", "data.path=/d"), plan(60000, 10000))
    assert message == ("bad value for 'model.num_classes': 5 is fewer than the 10 classes of the shards at /d "
                       "(labels 0..9); set model.num_classes=0 to take it from the shards, or at least 10")
    check_plan(cfg_of("model.num_classes=10"), plan(60000, 10000))
    check_plan(cfg_of("model.num_classes=1000"), plan(60000, 10000))  # more outputs than labels: allowed


def test_check_plan_takes_the_drivers_plan(fashion_shards, tmp_path):
    """The real DataPlan of plan_data (data.limit=1, 2 workers), as the driver will pass it."""
    from raysys.train.locations import pin_locations
    from raysys.driver.training import plan_data

    cfg = pin_locations(cfg_of(f"data.path={fashion_shards}", "data.limit=1", tmp=tmp_path))
    with pytest.raises(ConfigError, match="the train stream has 1 rows for scaling.num_workers=2"):
        check_plan(cfg, plan_data(cfg))
    cfg = pin_locations(cfg_of(f"data.path={fashion_shards}", "data.holdout=1", "data.test_limit=0", tmp=tmp_path))
    with pytest.raises(ConfigError, match=r"the test stream has 1 rows .*; set data.holdout >= 2, or fewer workers$"):
        check_plan(cfg, plan_data(cfg))


# -- tune spaces -----------------------------------------------------------------------------------
def space(tmp_path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(f"preset: {P}\nseeds: [0]\n{text}")
    return path


@pytest.mark.parametrize("text, overrides", [
    ("max_concurrent: -1\n", ()), ("", ("max_concurrent=-1",)), ("max_concurrent: two\n", ()), ("", ("max_concurrent=1.5",)),
])
def test_max_concurrent_below_zero_or_not_an_integer(tmp_path, text, overrides):
    from raysys.tune.space import load_space

    message = refused(ConfigError, load_space, space(tmp_path, text), overrides)
    assert message.startswith("space field 'max_concurrent': ")
    assert message.endswith("(must be an integer >= 0; 0 = as many trials as the cluster holds)")


def test_check_max_concurrent_for_callers_of_run_sweep():
    from raysys.tune.space import check_max_concurrent

    assert check_max_concurrent(0) == 0 and check_max_concurrent(3) == 3
    for bad in (-1, True, "2", 2.0):
        with pytest.raises(ConfigError, match="space field 'max_concurrent'"):
            check_max_concurrent(bad)


@pytest.mark.parametrize("spec, message", [
    ("{loguniform: [-1, 0]}", "loguniform needs [low, high], two numbers with 0 < low < high, got [-1, 0]"),
    ("{loguniform: [0.1, 0.01]}", "loguniform needs [low, high], two numbers with 0 < low < high, got [0.1, 0.01]"),
    ("{loguniform: [0.1]}", "loguniform needs [low, high], two numbers with 0 < low < high, got [0.1]"),
    ("{uniform: [1, 0]}", "uniform needs [low, high], two numbers with low < high, got [1, 0]"),
    ("{uniform: [a, 1]}", "uniform needs [low, high], two numbers with low < high, got ['a', 1]"),
    ("{randint: [0.5, 4]}", "randint needs [low, high], two integers with low < high (high excluded), got [0.5, 4]"),
    ("{choice: []}", "choice needs a non-empty list of values, got []"),
    ("[]", "an empty list; give the values to choose from"),
    ("{normal: [0, 1]}", "{'normal': [0, 1]} is not a list or one of choice/uniform/loguniform/randint"),
])
def test_random_specs_are_refused_in_one_line(tmp_path, spec, message):
    from raysys.tune.space import load_space

    text = refused(ConfigError, load_space, space(tmp_path, f"random:\n  train.lr: {spec}\n"))
    assert text.startswith(f"space random.train.lr: {message}")


def test_random_specs_that_are_fine_still_draw(tmp_path):
    from raysys.tune.space import load_space

    loaded = load_space(space(tmp_path, "num_samples: 3\nrandom:\n  train.lr: {loguniform: [0.001, 0.1]}\n"
                                        "  train.momentum: {uniform: [0.8, 0.95]}\n"), check_trials=False)
    lrs = [float(next(o for o in row.overrides if o.startswith("train.lr=")).split("=")[1]) for row in loaded.rows]
    assert len(lrs) == 3 and all(0.001 <= lr <= 0.1 for lr in lrs)


def test_num_samples_must_be_at_least_one(tmp_path):
    from raysys.tune.space import load_space

    message = refused(ConfigError, load_space, space(tmp_path, "num_samples: 0\nrandom:\n  train.lr: [0.1, 0.2]\n"))
    assert message == "space field 'num_samples': 0 (must be an integer >= 1)"


def test_a_row_is_checked_as_train_checks_it(tmp_path):
    from raysys.tune.space import load_space

    message = refused(ConfigError, load_space, space(tmp_path, "overrides: [train.scheduler_params.warmup_epochs=2]\n"))
    assert message.startswith(f"tune space {tmp_path / 'space.yaml'}, row 'fashion-mnist-resnet20': "
                              "train.scheduler_params.warmup_epochs is not used by train.scheduler=onecycle")


# -- checkpoints and weights --------------------------------------------------------------------------
class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


class _Custom:
    pass


@pytest.mark.parametrize("kind", ["checkpoint", "weights"])
def test_weights_only_refusal_names_the_global_and_gives_no_unsafe_advice(tmp_path, monkeypatch, kind):
    from raysys.models.weights import read_state_dict
    from raysys.train.checkpoint import load_file

    monkeypatch.chdir(tmp_path)
    load = load_file if kind == "checkpoint" else read_state_dict
    torch.save({"model": _Exploit()}, tmp_path / "system.pt")
    torch.save({"model": _Custom()}, tmp_path / "custom.pt")
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(_Exploit()))
    system = refused(CheckpointError, load, tmp_path / "system.pt")
    custom = refused(CheckpointError, load, tmp_path / "custom.pt")
    raw = refused(CheckpointError, load, tmp_path / "raw.pt")
    assert system.startswith(f"refusing to load {kind} {tmp_path / 'system.pt'}: it refers to the Python global "
                             f"{os.system.__module__}.system, which weights-only loading does not allow (")
    assert f"the Python global {__name__}._Custom," in custom
    assert raw.startswith(f"refusing to load {kind} {tmp_path / 'raw.pt'}: it is not a torch.save file that "
                          "weights-only loading accepts (its pickle stops at opcode ")
    for message in (system, custom, raw):
        message = message.replace(str(tmp_path), "<tmp>")  # pytest names the folder after this test
        assert "weights_only=False" not in message and "weights_only" not in message.replace("weights-only", "")
        assert "safe_globals" not in message and "trusted source" not in message
    assert not (tmp_path / "pwned").exists()


def test_other_load_failures_keep_their_first_line(tmp_path):
    from raysys.train.checkpoint import load_file

    torch.save({"x": torch.ones(2)}, tmp_path / "good.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:100])
    assert "PytorchStreamReader failed reading zip archive" in refused(CheckpointError, load_file, tmp_path / "cut.pt")
    assert load_file(tmp_path / "good.pt")["x"].sum() == 2


# -- shards -----------------------------------------------------------------------------------------
def clone(shards: Path, out: Path) -> Path:
    out.mkdir()
    shutil.copy(shards / "manifest.json", out / "manifest.json")
    for shard in shards.glob("*.parquet"):
        shutil.copy(shard, out / shard.name)
    return out


def edit_manifest(out: Path, edit) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest["splits"]["test"]["shards"][0])
    (out / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("file", ["../../../../etc/passwd", "/etc/passwd", "sub/../../x.parquet", "", "s3://b/x.parquet"])
def test_manifest_may_name_only_files_in_its_folder(fashion_shards, tmp_path, file):
    from raysys.data.shards import load_manifest

    out = clone(fashion_shards, tmp_path / "shards")
    edit_manifest(out, lambda shard: shard.update(file=file))
    message = refused(DataError, load_manifest, str(out))
    assert message == (f"{out}/manifest.json: split 'test' names the shard file {file!r}, which is not a path inside "
                       "the shards folder; a manifest may name only files in its own folder (re-run prepare with --overwrite)")


def test_a_manifest_checked_elsewhere_is_still_confined(fashion_shards, tmp_path):
    """shard_files and verify_shards refuse an escaping name even in a manifest that bypassed load_manifest."""
    from raysys.data.shards import load_manifest, shard_files, verify_shards

    out = clone(fashion_shards, tmp_path / "shards")
    manifest = load_manifest(str(out))
    manifest["splits"]["test"]["shards"][0]["file"] = "../../../../etc/passwd"
    for call in (lambda: shard_files(str(out), manifest, "test"), lambda: verify_shards(str(out), manifest, ["test"])):
        with pytest.raises(DataError, match="which is not a path inside the shards folder"):
            call()


def test_symlinks_out_of_the_folder_are_refused(fashion_shards, tmp_path):
    from raysys.data.shards import load_manifest, shard_files, verify_shards

    out = clone(fashion_shards, tmp_path / "shards")
    (out / TEST_SHARD).unlink()
    (out / TEST_SHARD).symlink_to(fashion_shards / TEST_SHARD)
    manifest = load_manifest(str(out))
    expected = (f"shard {out}/{TEST_SHARD} resolves to {(fashion_shards / TEST_SHARD).resolve()}, outside the shards "
                f"folder {out.resolve()}; a manifest may name only files in its own folder (re-run prepare with --overwrite)")
    assert refused(DataError, verify_shards, str(out), manifest, ["train", "test"]) == expected
    assert refused(DataError, shard_files, str(out), manifest, "test") == expected
    # A link inside the folder, and a shards folder that is itself a link, are fine.
    (out / TEST_SHARD).unlink()
    shutil.copy(fashion_shards / TEST_SHARD, out / "real.parquet")
    (out / TEST_SHARD).symlink_to(out / "real.parquet")
    verify_shards(str(out), manifest, ["test"])
    (tmp_path / "link").symlink_to(out)
    verify_shards(str(tmp_path / "link"), load_manifest(str(tmp_path / "link")), ["test"])


def test_data_path_that_is_a_file(fashion_shards, tmp_path):
    from raysys.data.shards import load_manifest

    (tmp_path / "notes.txt").write_text("x")
    message = refused(DataError, load_manifest, str(tmp_path / "notes.txt"))
    assert message == (f"no shards at {tmp_path / 'notes.txt'}: it is a file, not a shards folder (the folder "
                       "`prepare --out` wrote, holding manifest.json and the .parquet shards)")
    assert "prepare" not in message.split("(")[0] and "--out " not in message
    message = refused(DataError, load_manifest, str(fashion_shards / "manifest.json"))
    assert message.endswith(f"; did you mean {fashion_shards}?")


def break_page(out: Path) -> None:
    with open(out / TEST_SHARD, "r+b") as handle:
        handle.seek(4)
        handle.write(b"\xff" * 32)


def test_corrupt_page_is_found_by_verification_naming_its_shard(fashion_shards, tmp_path):
    from raysys.data.shards import load_manifest, verify_shards

    out = clone(fashion_shards, tmp_path / "shards")
    break_page(out)
    manifest = load_manifest(str(out))
    message = refused(DataError, verify_shards, str(out), manifest, ["train", "test"])
    assert message.startswith(f"corrupt Parquet shard {out}/{TEST_SHARD} (row group 0): ")
    assert message.endswith("; re-run prepare with --overwrite")
    verify_shards(str(out), manifest, ["train"])  # the train shard is fine


def test_large_datasets_are_not_read_by_verification(fashion_shards, tmp_path, monkeypatch):
    """Above READ_CHECK_BYTES only size, rows and footer are checked (data.verify_checksums=true hashes)."""
    from raysys.data import shards as module

    out = clone(fashion_shards, tmp_path / "shards")
    break_page(out)
    manifest = module.load_manifest(str(out))
    monkeypatch.setattr(module, "READ_CHECK_BYTES", 1)
    module.verify_shards(str(out), manifest, ["test"])
    with pytest.raises(DataError, match="checksum mismatch"):
        module.verify_shards(str(out), manifest, ["test"], checksums=True)


# -- prepare ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [0, -3])
def test_prepare_refuses_rows_per_shard_before_reading(tmp_path, monkeypatch, rows):
    import pipelines.prepare as prepare_module

    def reached(*args, **kwargs):
        raise AssertionError("the dataset was looked up before the arguments were checked")

    monkeypatch.setattr(prepare_module, "get_dataset", reached)
    message = refused(ConfigError, prepare_module.prepare, "fashion-mnist", str(tmp_path / "src"), str(tmp_path / "out"),
                      rows_per_shard=rows)
    assert message == f"bad value for --rows-per-shard: {rows} (must be >= 1; leave it out for shards of about 64 MiB)"
    assert list(tmp_path.iterdir()) == []


def test_prepare_cli_refuses_in_one_line_and_writes_nothing(tmp_path, capfd, monkeypatch):
    from raysys.cli.main import main

    monkeypatch.setattr("pipelines.prepare.get_dataset", lambda *a, **k: (_ for _ in ()).throw(AssertionError("read")))
    capfd.readouterr()
    code = main(["prepare", "fashion-mnist", "--source", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
                 "--rows-per-shard", "0", "--resize", "-1"])
    err = capfd.readouterr().err.strip()
    assert code == 2
    assert err == "error: bad value for --rows-per-shard: 0 (must be >= 1; leave it out for shards of about 64 MiB)"
    assert list(tmp_path.iterdir()) == []


def test_prepare_refuses_a_negative_resize_first(tmp_path):
    from pipelines.prepare import prepare

    message = refused(ConfigError, prepare, "nope", str(tmp_path / "src"), str(tmp_path / "out"), resize=-1)
    assert message == "bad value for --resize: -1 (must be >= 0; 0 keeps the original size)"
