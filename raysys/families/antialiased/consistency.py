"""Shift consistency of a classifier (antialiased-cnns ``main.py -es`` and ``-ed``).

Inputs are batches of normalised 256x256 images (the original's ``Resize(256)`` +
``CenterCrop(256)``). Pure torch; a distributed caller runs these on its shard
and sums the counts.

- :func:`shift_agreement` (``-es``): per batch, two offsets ``off0, off1`` in
  ``[0, 32)^2`` (row, column), drawn from the caller's ``torch.Generator`` and
  shared by the whole batch; the model classifies both 224x224 crops and the
  argmax predictions are compared. It returns counts, not a percentage: the
  original averages per-batch percentages weighted by batch size, which is
  ``100 * sum(agree) / sum(total)``, so workers sum ``(agree, total)`` (e.g. an
  all-reduce of :meth:`AgreementCount.as_tensor`) and take
  :attr:`AgreementCount.percent` at the end. The original makes
  ``--epochs-shift`` (5) passes over the validation set; a caller loops.
- :func:`diagonal_shift` (``-ed``): 33 crops at offsets ``(d, d)``, d = 0..32;
  per image and offset the arrays the original saves as ``diag_probs.npy``
  (100 x softmax probability of the target), ``diag_probs2.npy`` (100 x the
  highest probability of another class), ``diag_corrs.npy`` (prediction is the
  target) and ``diag_preds.npy`` (predicted class), as float64 (N, 33) tensors.
  It draws nothing at random.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterable, Tuple

import torch
from torch import nn

CROP = 224
MAX_SHIFT = 32  # offsets in [0, MAX_SHIFT)
DIAGONAL_OFFSETS = 33  # d = 0..32

Offset = Tuple[int, int]


@dataclass(frozen=True)
class AgreementCount:
    """How many images got the same prediction on both crops, out of how many."""

    agree: int = 0
    total: int = 0

    def __add__(self, other: "AgreementCount") -> "AgreementCount":
        return AgreementCount(self.agree + other.agree, self.total + other.total)

    def __radd__(self, other):
        return self if other == 0 else NotImplemented  # lets sum(counts) work

    @property
    def percent(self) -> float:
        """Consistency in percent, as the original prints it (nan when nothing was counted)."""
        return 100.0 * self.agree / self.total if self.total else float("nan")

    def as_tensor(self, device=None) -> torch.Tensor:
        """``[agree, total]`` as int64, for an all-reduce (sum) across workers."""
        return torch.tensor([self.agree, self.total], dtype=torch.int64, device=device)

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor) -> "AgreementCount":
        agree, total = (int(v) for v in tensor.tolist())
        return cls(agree, total)


def draw_offsets(generator: torch.Generator, max_shift: int = MAX_SHIFT) -> Tuple[Offset, Offset]:
    """``off0, off1``: two (row, column) offsets in ``[0, max_shift)^2``, in the original's order."""
    off0 = torch.randint(max_shift, (2,), generator=generator).tolist()
    off1 = torch.randint(max_shift, (2,), generator=generator).tolist()
    return (off0[0], off0[1]), (off1[0], off1[1])


def crop(images: torch.Tensor, offset: Offset, size: int = CROP) -> torch.Tensor:
    """The ``size`` x ``size`` window of a (N, C, H, W) batch whose top-left corner is ``offset``."""
    row, col = offset
    return images[:, :, row : row + size, col : col + size]


def _check_images(images: torch.Tensor, needed: int) -> None:
    if images.dim() != 4 or images.shape[-2] < needed or images.shape[-1] < needed:
        raise ValueError(
            f"expected a (N, C, H, W) batch with H, W >= {needed} (256x256 in the original), got {tuple(images.shape)}"
        )


@contextmanager
def _evaluating(model: nn.Module):
    """Run the model in eval mode without gradients, then restore its mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def predictions_agree(output0: torch.Tensor, output1: torch.Tensor) -> AgreementCount:
    """Count of equal argmax predictions of two (N, classes) outputs."""
    same = output0.argmax(dim=1) == output1.argmax(dim=1)
    return AgreementCount(int(same.sum().item()), int(same.numel()))


def shift_agreement(
    model: nn.Module, images: torch.Tensor, generator: torch.Generator, crop_size: int = CROP, max_shift: int = MAX_SHIFT,
) -> AgreementCount:
    """One ``-es`` step: classify two randomly shifted crops of ``images`` and count agreements.

    ``generator`` (a CPU generator) draws the two offsets shared by the batch; seed
    it per worker (or per batch) for reproducible, independent draws. The model runs in eval mode under
    ``no_grad``; its previous mode is restored.
    """
    _check_images(images, crop_size + max_shift - 1)
    off0, off1 = draw_offsets(generator, max_shift)
    with _evaluating(model):
        output0 = model(crop(images, off0, crop_size))
        output1 = model(crop(images, off1, crop_size))
    return predictions_agree(output0, output1)


def shift_consistency(
    model: nn.Module, batches: Iterable[torch.Tensor], generator: torch.Generator, passes: int = 1,
) -> AgreementCount:
    """:func:`shift_agreement` summed over ``passes`` passes of a re-iterable ``batches``."""
    total = AgreementCount()
    for _ in range(passes):
        for images in batches:
            total = total + shift_agreement(model, images, generator)
    return total


def diagonal_shift(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, crop_size: int = CROP, offsets: int = DIAGONAL_OFFSETS,
) -> Dict[str, torch.Tensor]:
    """One ``-ed`` step: per image, the model's answer on the crops at ``(d, d)``, d < ``offsets``.

    Returns float64 (N, offsets) tensors ``probs``, ``probs2``, ``corrs``, ``preds``,
    the rows of the original's ``diag_probs/probs2/corrs/preds.npy`` for these images.
    """
    _check_images(images, crop_size + offsets - 1)
    targets = targets.reshape(-1).to(device=images.device, dtype=torch.long)
    if targets.numel() != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {targets.numel()} targets")
    rows = torch.arange(images.shape[0], device=images.device)
    columns = {"probs": [], "probs2": [], "corrs": [], "preds": []}
    with _evaluating(model):
        for d in range(offsets):
            probs = torch.softmax(model(crop(images, (d, d), crop_size)).float(), dim=1).double()
            preds = probs.argmax(dim=1)
            columns["probs"].append(100.0 * probs[rows, targets])
            columns["corrs"].append((preds == targets).double())
            columns["preds"].append(preds.double())
            others = probs.clone()
            others[rows, targets] = 0.0
            columns["probs2"].append(100.0 * others.max(dim=1).values)
    return {name: torch.stack(values, dim=1).cpu() for name, values in columns.items()}
