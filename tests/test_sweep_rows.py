"""Sweep rows name their runs, tag them, and a dry run says what a sweep would do (no Ray)."""
from __future__ import annotations

from pathlib import Path

from raysys.driver import record as rec
from raysys.track import runs
from raysys.tune.space import labelled_run_name, load_space, row_slug, unlabelled_run_name
from raysys.tune.sweep import TrialOutcome, plan_trials, row_headlines, trial_configs
from tests.conftest import REPO, run_cli

SPACE = REPO / "tune_spaces" / "cifar-resnet-fashion-mnist.yaml"
PRESET = "cifar-resnet/fashion-mnist-resnet20"


def test_a_row_that_changes_its_preset_names_its_runs_by_its_label():
    assert row_slug("ResNet-32 lr=0.1 #0") == "ResNet-32-lr0.1-0"
    assert labelled_run_name("ResNet-32", PRESET, "fashion-mnist-resnet20-seed3-0123abcd") == "ResNet-32-seed3-0123abcd"
    assert unlabelled_run_name("ResNet-32", PRESET, "ResNet-32-seed3-0123abcd") == "fashion-mnist-resnet20-seed3-0123abcd"
    # the preset as it is keeps the name `raysys train <preset>` gives it; explicit names stay
    assert labelled_run_name("ResNet-20", PRESET, "fashion-mnist-resnet20-seed3") == "fashion-mnist-resnet20-seed3"
    assert labelled_run_name("ResNet-32", PRESET, "my-run") == "my-run"


def _finished_run(cfg, exp_id) -> str:
    found = rec.lookup(cfg.tracking.uri, exp_id, cfg)
    record = rec.RunRecord.open(cfg, exp_id, found, kind="train", tags={}, label="test run")
    record.log_config(cfg)
    runs.log_metrics(cfg.tracking.uri, record.run_id, {"test_acc": 0.5}, step=1)
    record.close("FINISHED")
    return record.run_id


def test_dry_run_shows_run_names_and_finds_a_run_recorded_under_its_former_name(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = load_space(SPACE, [f"tracking.uri={uri}", "seeds=[0,1]"])
    configs = trial_configs(space, space.experiment_name())
    by_trial = dict(zip([(t.label, t.seed) for t in space.trials()], configs))
    assert by_trial["ResNet-20", 0].run_name == "fashion-mnist-resnet20-seed0"
    assert by_trial["ResNet-32", 1].run_name.startswith("ResNet-32-seed1-")
    # a run of the ResNet-32 row recorded before names said the row
    old = by_trial["ResNet-32", 0].copy()
    old.run_name = unlabelled_run_name("ResNet-32", PRESET, old.run_name)
    assert old.run_name.startswith("fashion-mnist-resnet20-seed0-")
    old_id = _finished_run(old, runs.experiment_id(uri, space.experiment_name()))

    planned = {(p.trial.label, p.trial.seed): p for p in plan_trials(space)}
    assert planned["ResNet-32", 0].state == "finished" and planned["ResNet-32", 0].run_id == old_id
    assert planned["ResNet-32", 0].run_name == old.run_name
    assert [planned[k].state for k in [("ResNet-20", 0), ("ResNet-20", 1), ("ResNet-32", 1)]] == ["new"] * 3

    result = run_cli("sweep", str(SPACE), f"tracking.uri={uri}", "seeds=[0,1]", "--dry-run", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "sweep cifar-resnet-fashion-mnist: 4 trials: 1 finished (skipped), 0 to resume, 3 new"
    assert any(line.startswith("finished") and old.run_name in line for line in lines)
    assert any(line.startswith("new") and "ResNet-32-seed1-" in line for line in lines)


def test_a_dry_run_creates_no_tracking_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'nowhere.db'}"
    planned = plan_trials(load_space(SPACE, [f"tracking.uri={uri}", "seeds=[0]"]))
    assert [p.state for p in planned] == ["new", "new"]
    assert not Path(tmp_path / "nowhere.db").exists()


def test_the_sweep_parent_logs_each_rows_mean_and_std_over_seeds():
    space = load_space(SPACE, ["seeds=[0,1]"], check_trials=False)
    trials = space.trials()
    outcomes = [TrialOutcome(t, "", "finished", test_acc=acc) for t, acc in zip(trials, [0.8, 0.9, 0.7, None])]
    metrics = row_headlines(outcomes)
    assert abs(metrics["row/ResNet-20/test_acc_mean"] - 0.85) < 1e-9
    assert abs(metrics["row/ResNet-20/test_acc_std"] - 0.0707106781) < 1e-6
    assert metrics["row/ResNet-32/test_acc_n"] == 1 and metrics["row/ResNet-32/test_acc_std"] == 0.0


def test_an_experiment_is_described_by_its_papers_title_once(tmp_path):
    from raysys.driver.launch import experiment_description

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    text = experiment_description("cifar-resnet")
    assert text.startswith("CIFAR ResNets (He et al. 2016)")
    exp_id = runs.experiment_id(uri, "cifar-resnet", text)
    runs.client(uri).set_experiment_tag(exp_id, runs.NOTE_TAG, "the user's own words")
    assert runs.experiment_id(uri, "cifar-resnet", text) == exp_id  # an existing description is kept
    tags = runs.client(uri).get_experiment(exp_id).tags
    assert tags[runs.NOTE_TAG] == "the user's own words"
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow 3's UI: the training view
    assert experiment_description("no-such-paper") == ""
