"""Presets, dotted overrides and the one-line errors for bad ones."""
from __future__ import annotations

import pytest

from raysys.config import flatten, list_presets, load_config
from raysys.config.loader import parse_override
from raysys.errors import ConfigError
from tests.conftest import run_cli

DEMO = "cifar-resnet/fashion-mnist-resnet20"


def test_presets_are_listed_with_their_paper():
    presets = {p.name: p for p in list_presets()}
    assert DEMO in presets
    assert presets[DEMO].paper == "cifar-resnet"
    assert presets[DEMO].description


def test_preset_values_and_overrides():
    cfg = load_config(DEMO, ["train.epochs=2", "scaling.num_workers=2", "seed=1", "train.betas=[0.8, 0.9]"])
    assert cfg.model.name == "cifar_resnet20"
    assert cfg.train.epochs == 2 and cfg.scaling.num_workers == 2 and cfg.seed == 1
    assert list(cfg.train.betas) == [0.8, 0.9]
    assert cfg.preset == DEMO and cfg.paper == "cifar-resnet"


def test_free_form_scheduler_params_accept_new_keys():
    cfg = load_config(DEMO, ["train.scheduler_params.warmup_epochs=5", "train.scheduler_params.eta_min=0.001"])
    assert cfg.train.scheduler_params.warmup_epochs == 5
    assert cfg.train.scheduler_params.eta_min == 0.001


def test_override_values_are_read_as_yaml():
    assert parse_override("net.block_width_factors=[1.0, 2, 1.5]") == ("net.block_width_factors", [1.0, 2, 1.5])
    assert parse_override("train.augment=None") == ("train.augment", "None")
    assert parse_override("tracking.uri=") == ("tracking.uri", "")


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.epoch=2", "unknown config key 'train.epoch' (did you mean: train.epochs"),
        ("trian.epochs=2", "unknown config key 'trian.epochs' (did you mean: train.epochs"),
        ("train.epochs=abc", "bad value 'abc' for 'train.epochs'"),
        ("scaling.num_workers=two", "bad value 'two' for 'scaling.num_workers'"),
        ("train.optimizer=adamm", "bad value for 'train.optimizer': 'adamm' is not one of"),
        ("model.name=cifar_resnet21", "did you mean: cifar_resnet32, cifar_resnet20"),
        ("train.scheduler=cosin", "did you mean: cosine"),
        ("data.name=fashion-mnst", "did you mean: fashion-mnist"),
        ("train.augment=resnett", "did you mean: resnet"),
        ("train.epochs", "must have the form key=value"),
        ("seed.value=1", "config key 'seed' is a value"),
    ],
)
def test_bad_overrides_name_the_key_and_suggest(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(DEMO, [override])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_unknown_preset_suggests_close_names():
    with pytest.raises(ConfigError, match=r"unknown preset: 'cifar-resnet/fashion-mnist-resnet2' .*did you mean: cifar-resnet/fashion-mnist-resnet20"):
        load_config("cifar-resnet/fashion-mnist-resnet2")


def test_run_name_comes_from_preset_seed_and_science_overrides():
    plain = load_config(DEMO, ["seed=3"])
    assert plain.run_name == "fashion-mnist-resnet20-seed3"
    # Operational settings do not change which run this is: a re-run resumes it.
    assert load_config(DEMO, ["seed=3", "scaling.num_workers=1", "tracking.uri=sqlite:///x.db", "data.path=/elsewhere"]).run_name == plain.run_name
    changed = load_config(DEMO, ["seed=3", "train.lr=0.05"]).run_name
    assert changed.startswith("fashion-mnist-resnet20-seed3-") and changed != plain.run_name
    assert load_config(DEMO, ["seed=3", "train.lr=0.05"]).run_name == changed
    assert load_config(DEMO, ["run_name=mine"]).run_name == "mine"


def test_flatten_gives_dotted_params():
    flat = flatten(load_config(DEMO))
    assert flat["train.epochs"] == 3
    assert flat["model.name"] == "cifar_resnet20"
    assert flat["train.scheduler_params.warmup_epochs"] == 0


def test_cli_refuses_bad_input_before_ray_with_one_line(tmp_path):
    result = run_cli("train", DEMO, "train.epoch=2", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "error: unknown config key 'train.epoch' (did you mean: train.epochs, train.amp, train.recipe?)"
    assert all(line.startswith("raysys [") for line in lines[:-1])  # only the phase lines before it
    assert not (tmp_path / "mlflow.db").exists()  # nothing started


def test_cli_lists_presets_grouped_by_paper(tmp_path):
    result = run_cli("presets", cwd=tmp_path, timeout=120)
    assert result.returncode == 0
    papers = [line.split(":")[0] for line in result.stdout.splitlines() if line and not line[0].isspace()]
    assert "cifar-resnet" in papers and papers == sorted(papers)
    assert DEMO in result.stdout


def test_overrides_may_follow_options(tmp_path):
    result = run_cli("train", DEMO, "--print-config", "train.epochs=5", "seed=2", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "epochs: 5" in result.stdout and "seed: 2" in result.stdout
    bad = run_cli("train", DEMO, "--print-config", "--nope", cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "unrecognized arguments: --nope" in bad.stderr
