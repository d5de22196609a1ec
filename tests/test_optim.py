"""Optimizers and per-iteration schedules built from the config."""
from __future__ import annotations

import math

import pytest
import torch

from raysys.config import load_config
from raysys.train.optim import build_optimizer, build_scheduler

DEMO = "cifar-resnet/fashion-mnist-resnet20"


def lrs(overrides, steps_per_epoch=10):
    cfg = load_config(DEMO, overrides)
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = build_optimizer(cfg, [{"params": params}], 0.0)
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch)
    out = []
    for _ in range(cfg.train.epochs * steps_per_epoch):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out, optimizer


def test_cosine_with_linear_warmup_as_flexconv():
    out, optimizer = lrs(["train.optimizer=Adam", "train.lr=0.01", "train.epochs=10", "train.scheduler=cosine", "train.scheduler_params.warmup_epochs=2"])
    assert isinstance(optimizer, torch.optim.Adam)
    assert out[0] == pytest.approx(0.01 / 20)  # 1/warmup_iters of the lr at the first step
    assert out[19] == pytest.approx(0.01)  # end of warm-up
    assert out[20] == pytest.approx(0.01)  # cosine starts at the peak
    assert all(a >= b for a, b in zip(out[20:], out[21:]))  # then decays
    assert out[-1] == pytest.approx(1e-6 + (0.01 - 1e-6) * (1 + math.cos(math.pi * 79 / 80)) / 2)


def test_onecycle_peaks_at_lr():
    out, _ = lrs(["train.scheduler=onecycle", "train.lr=0.2", "train.epochs=10"])
    assert max(out) == pytest.approx(0.2)
    assert out[0] == pytest.approx(0.2 / 25)
    assert out.index(max(out)) == pytest.approx(0.3 * 100, abs=1)


def test_step_schedule_every_n_epochs():
    out, _ = lrs(["train.scheduler=step", "train.lr=0.1", "train.epochs=6", "train.scheduler_params.step_size=2"])
    assert out[0] == pytest.approx(0.1) and out[19] == pytest.approx(0.1)
    assert out[20] == pytest.approx(0.01) and out[40] == pytest.approx(0.001)


def test_param_group_lr_factor():
    cfg = load_config(DEMO, ["train.lr=0.01"])
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer(cfg, [{"params": [a]}, {"params": [b], "lr_factor": 0.1}], 0.0)
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(0.01), pytest.approx(0.001)]
