"""The legacy entry point: original command lines -> raysys commands, no flag dropped."""
from __future__ import annotations

import pytest

from raysys.cli.main import main
from raysys.errors import ConfigError
from raysys.legacy import TRANSLATORS, Translation, translate
from raysys.legacy.registry import split_command


def test_split_command_strips_the_interpreter():
    assert split_command(["python", "-u", "src/train_superposition.py", "-e", "5"]) == ("train_superposition.py", ["-e", "5"])
    assert split_command(["python run_experiment.py seed=0"]) == ("run_experiment.py", ["seed=0"])


def test_unknown_script_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"no translator for 'nope.py'"):
        translate(["python", "nope.py"])


@pytest.fixture
def toy_translator():
    def toy(args):
        unknown = [a for a in args if a.startswith("--wandb")]
        if unknown:
            raise ConfigError(f"legacy toy.py: unsupported flag {unknown[0]}")
        return Translation("train", "cifar-resnet/fashion-mnist-resnet20", [f"seed={args[0]}"])

    TRANSLATORS.add("toy.py", toy)
    yield
    TRANSLATORS._items.pop("toy.py")


def test_print_shows_the_equivalent_command(toy_translator, capsys):
    assert main(["legacy", "--print", "--", "python", "toy.py", "3"]) == 0
    assert capsys.readouterr().out.strip() == "python -m raysys train cifar-resnet/fashion-mnist-resnet20 seed=3"


def test_unsupported_flag_is_named(toy_translator, capsys):
    assert main(["legacy", "--print", "--", "python", "toy.py", "3", "--wandb_project", "x"]) == 2
    assert "unsupported flag --wandb_project" in capsys.readouterr().err
