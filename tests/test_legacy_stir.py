"""The STIR scripts/train.py translator (raysys/families/stir/legacy/train.py)."""
from __future__ import annotations

import pytest

from raysys.config import load_config
from raysys.errors import ConfigError
from raysys.legacy import translate

BASE = ["python", "scripts/train.py", "--model", "pixel_pool", "--data", "emoji", "--evaluation", "2",
        "--kernel-size", "7", "--interpolation", "bicubic", "--lr", "1e-2", "--seed", "3"]


def test_train_py_becomes_a_stir_preset_with_overrides():
    t = translate(BASE)
    assert (t.command, t.preset) == ("train", "stir/emoji")
    cfg = load_config(t.preset, t.overrides)
    assert cfg.model.name == "stir_pixel_pool" and cfg.stir.evaluation == 2
    assert (cfg.stir.kernel_size, cfg.stir.interpolation) == (7, "bicubic")
    assert cfg.train.lr == 0.01 and cfg.seed == 3 and cfg.train.recipe == "stir"
    assert cfg.stir.shuffle == "once"  # the original's once-shuffled train order
    readme = translate([a if a != "--data" else "--dataset" for a in BASE])  # the README's spelling
    assert readme.overrides == t.overrides


@pytest.mark.parametrize("extra,message", [
    (["--gpus", "2"], "unsupported argument '--gpus'"),
    (["--model", "resnet"], "invalid choice: 'resnet'"),
    (["--kernel-size", "5"], "invalid choice: 5"),
])
def test_bad_flags_are_refused_by_name(extra, message):
    with pytest.raises(ConfigError, match=message):
        translate(BASE + extra)


def test_missing_required_flag_is_named():
    with pytest.raises(ConfigError, match="--seed"):
        translate(BASE[:-2])
