"""Checkpoints: atomic writes, weights_only loading, clear errors for the wrong file."""
from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from raysys.errors import CheckpointError
from raysys.models import create_model
from raysys.train import checkpoint as ckpt


def test_save_is_atomic_and_loads_with_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "state.pt"
    ckpt.save_atomic({"epoch": 1, "w": torch.ones(2)}, path)
    assert ckpt.load_file(path)["epoch"] == 1

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        ckpt.save_atomic({"epoch": 2}, path)
    assert ckpt.load_file(path)["epoch"] == 1  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]  # no temp file left


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"model": Exploit()}, handle)
    with pytest.raises(CheckpointError, match="refusing to load checkpoint"):
        ckpt.load_file(path)
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_of_another_model_is_refused():
    small = create_model("cifar_resnet20", in_channels=3, num_classes=10)
    big = create_model("cifar_resnet32", in_channels=3, num_classes=10)
    with pytest.raises(CheckpointError, match=r"does not fit model CIFARResNet: .*missing keys"):
        ckpt.load_model_state(big, small.state_dict(), "resnet20.pt")
    other_classes = create_model("cifar_resnet20", in_channels=3, num_classes=100)
    with pytest.raises(CheckpointError, match=r"shape mismatches \(e.g. linear.bias"):
        ckpt.load_model_state(other_classes, small.state_dict(), "resnet20.pt")


def test_ddp_prefix_is_stripped():
    model = create_model("cifar_resnet20", in_channels=1, num_classes=10)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    ckpt.load_model_state(model, state, "ddp.pt")


def test_rng_state_round_trips_through_weights_only(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    ckpt.save_atomic({"rng": ckpt.rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.set_rng_state(ckpt.load_file(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
