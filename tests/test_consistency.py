"""Shift consistency (-es) and diagonal shifts (-ed) on models whose answers are known."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from raysys.families.antialiased.consistency import (
    AgreementCount, diagonal_shift, draw_offsets, predictions_agree, shift_agreement, shift_consistency,
)


def coordinate_images(n: int, side: int = 256) -> torch.Tensor:
    """Channel 0 holds each pixel's row, channel 1 its column: a crop's top-left pixel is its offset."""
    rows = torch.arange(side, dtype=torch.float32).view(side, 1).expand(side, side)
    cols = rows.t()
    image = torch.stack([rows, cols, torch.zeros(side, side)])
    return image.expand(n, 3, side, side).clone()


class ConstantModel(nn.Module):
    def forward(self, x):
        return torch.tensor([0.0, 1.0, 0.0]).expand(x.shape[0], 3)


class OffsetModel(nn.Module):
    """Logits: one-hot of the crop's row offset (mod ``classes``); records what it saw."""

    def __init__(self, classes: int = 2, scale: float = 1.0):
        super().__init__()
        self.classes, self.scale = classes, scale
        self.seen = []
        self.modes = []

    def forward(self, x):
        assert x.shape[-2:] == (224, 224)
        rows, cols = x[:, 0, 0, 0].long(), x[:, 1, 0, 0].long()
        self.seen.append((rows.tolist(), cols.tolist()))
        self.modes.append(self.training)
        return self.scale * nn.functional.one_hot(rows % self.classes, self.classes).float()


def test_constant_model_agrees_always():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(5, 3, 256, 256)
    counts = sum(shift_agreement(ConstantModel(), images, g) for _ in range(4))
    assert counts == AgreementCount(20, 20)
    assert counts.percent == 100.0


def test_offsets_are_shared_by_the_batch_and_in_range():
    model = OffsetModel()
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        shift_agreement(model, coordinate_images(3), g)
    assert len(model.seen) == 40  # two crops per batch
    for rows, cols in model.seen:
        assert len(set(rows)) == 1 and len(set(cols)) == 1  # one offset for the whole batch
        assert 0 <= rows[0] < 32 and 0 <= cols[0] < 32
    # the generator is the only source of randomness: replaying it gives the same crops
    replay = torch.Generator().manual_seed(1)
    expected = [off for _ in range(20) for off in draw_offsets(replay)]
    assert [(rows[0], cols[0]) for rows, cols in model.seen] == expected


def test_offsets_cover_zero_to_31():
    g = torch.Generator().manual_seed(2)
    values = [v for _ in range(500) for off in draw_offsets(g) for v in off]
    assert min(values) == 0 and max(values) == 31


def test_parity_model_agrees_exactly_when_the_row_offsets_have_equal_parity():
    g = torch.Generator().manual_seed(3)
    model = OffsetModel(classes=2)
    images = coordinate_images(4)
    counts = [shift_agreement(model, images, g) for _ in range(200)]
    replay = torch.Generator().manual_seed(3)
    same_parity = [(o0[0] - o1[0]) % 2 == 0 for o0, o1 in (draw_offsets(replay) for _ in range(200))]
    assert counts == [AgreementCount(4 if same else 0, 4) for same in same_parity]
    total = sum(counts)
    assert total.percent == 100.0 * sum(same_parity) / 200
    assert 40 < total.percent < 60  # each parity pair is equally likely: ~50%


def test_counts_from_shards_sum_to_the_single_process_result():
    images = coordinate_images(6)
    model = OffsetModel(classes=3)
    single = shift_agreement(model, images, torch.Generator().manual_seed(4))
    # two workers, each with its own generator seeded identically for this check
    part_a = shift_agreement(model, images[:2], torch.Generator().manual_seed(4))
    part_b = shift_agreement(model, images[2:], torch.Generator().manual_seed(4))
    reduced = part_a.as_tensor() + part_b.as_tensor()  # what an all-reduce(sum) computes
    assert AgreementCount.from_tensor(reduced) == part_a + part_b == single
    assert (part_a + part_b).total == 6


def test_weighted_batch_average_equals_summed_counts():
    """The original's AverageMeter(weighted by batch size) of per-batch percentages."""
    counts = [AgreementCount(3, 8), AgreementCount(8, 8), AgreementCount(1, 5)]
    meter = sum(100.0 * c.agree / c.total * c.total for c in counts) / sum(c.total for c in counts)
    assert sum(counts).percent == pytest.approx(meter)
    assert math.isnan(AgreementCount().percent)


def test_model_runs_in_eval_mode_and_its_mode_is_restored():
    model = OffsetModel().train()
    shift_agreement(model, coordinate_images(2), torch.Generator().manual_seed(5))
    assert model.modes == [False, False] and model.training


def test_shift_consistency_loops_over_passes():
    batches = [coordinate_images(2), coordinate_images(3)]
    counts = shift_consistency(ConstantModel(), batches, torch.Generator().manual_seed(6), passes=5)
    assert counts == AgreementCount(25, 25)


def test_predictions_agree_counts_argmax_matches():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    b = torch.tensor([[5.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert predictions_agree(a, b) == AgreementCount(1, 3)


def test_images_smaller_than_256_are_refused():
    with pytest.raises(ValueError, match="H, W >= 255"):
        shift_agreement(ConstantModel(), torch.zeros(1, 3, 224, 224), torch.Generator())


def test_diagonal_shift_arrays():
    scale = 5.0
    model = OffsetModel(classes=40, scale=scale)
    targets = torch.tensor([0, 7, 39])
    out = diagonal_shift(model, coordinate_images(3), targets)
    assert set(out) == {"probs", "probs2", "corrs", "preds"}
    assert all(v.shape == (3, 33) and v.dtype == torch.float64 for v in out.values())
    offsets = torch.arange(33, dtype=torch.float64)
    assert torch.equal(out["preds"], offsets.expand(3, 33))  # the model answers the offset d of crop (d, d)
    hit = 100.0 * math.exp(scale) / (math.exp(scale) + 39)
    miss = 100.0 / (math.exp(scale) + 39)
    for i, target in enumerate(targets.tolist()):
        is_target = offsets == target
        assert torch.equal(out["corrs"][i], is_target.double())
        assert torch.allclose(out["probs"][i], torch.where(is_target, hit, miss).double(), rtol=1e-5)
        assert torch.allclose(out["probs2"][i], torch.where(is_target, miss, hit).double(), rtol=1e-5)
    # all 33 diagonal crops were seen, at (d, d)
    assert [(rows[0], cols[0]) for rows, cols in model.seen] == [(d, d) for d in range(33)]
