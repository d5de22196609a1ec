"""Mixup (Zhang et al. 2018): convex combinations of image pairs and their labels.

One lambda ~ Beta(alpha, alpha) per batch, the partner of each image drawn by a
random permutation of the batch; alpha = 0 turns mixup off (lambda = 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class MixedTargets:
    """The two label sets of a mixed batch and the weight of the first."""

    first: torch.Tensor
    second: torch.Tensor
    lam: float

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """lam * CE(logits, first) + (1 - lam) * CE(logits, second)."""
        return self.lam * F.cross_entropy(logits, self.first) + (1.0 - self.lam) * F.cross_entropy(logits, self.second)

    def soft(self, num_classes: int) -> torch.Tensor:
        """The mixed labels as (B, num_classes) probabilities; every row sums to 1."""
        first = F.one_hot(self.first, num_classes).float()
        second = F.one_hot(self.second, num_classes).float()
        return self.lam * first + (1.0 - self.lam) * second


def sample_lambda(alpha: float, generator: torch.Generator) -> float:
    """lambda ~ Beta(alpha, alpha), drawn reproducibly from ``generator``; 1 if alpha <= 0."""
    if alpha <= 0:
        return 1.0
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixup(images: torch.Tensor, labels: torch.Tensor, alpha: float, generator: torch.Generator):
    """(mixed images, MixedTargets) for one batch."""
    lam = sample_lambda(alpha, generator)
    order = torch.randperm(images.shape[0], generator=generator).to(images.device)
    mixed = lam * images + (1.0 - lam) * images[order]
    return mixed, MixedTargets(labels, labels[order], lam)
