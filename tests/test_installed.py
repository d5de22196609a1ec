"""Installed, not only checked out: a wheel-style install finds every preset, and tune spaces by name."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.conftest import REPO

PROBE = """
import sys
import raysys
from raysys.config.loader import list_presets, load_config
from raysys.tune.space import load_space
assert raysys.__file__.startswith('{target}'), raysys.__file__  # the installed copy, not the checkout
presets = list_presets()
for preset in presets:
    load_config(preset.name)
space = load_space('cifar-resnet-fashion-mnist', check_trials=False)
print(len(presets), sorted({{p.paper for p in presets}}), space.name)
"""


def test_an_installed_copy_finds_every_preset_and_a_tune_space_by_name(tmp_path):
    source = tmp_path / "source"  # a copy: building writes build/ beside pyproject.toml
    for name in ("raysys", "pipelines"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "RAYSYS_TUNE_SPACES": str(REPO / "tune_spaces")}
    probe = subprocess.run([sys.executable, "-c", PROBE.format(target=target)], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=600)
    assert probe.returncode == 0, probe.stderr[-3000:]
    count, *_, space = probe.stdout.split()
    assert int(count) > 100
    assert all(paper in probe.stdout for paper in ("antialiased", "cifar-resnet", "flexconv", "mimoconv", "stir"))
    assert space == "cifar-resnet-fashion-mnist"
