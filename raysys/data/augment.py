"""Batch augmentations as tensor operations on whole batches.

Every function takes and returns a float batch (N, C, H, W) in [0, 1] (before
normalisation). Randomness comes from an explicit ``torch.Generator`` so a
batch's augmentation is a pure function of its seed.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from raysys.registry import Registry

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTS: Registry[Augment] = Registry("augmentation", config_key="train.augment")


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator, mode: str = "constant") -> torch.Tensor:
    """Pad by ``padding`` and take one random crop of the original size per image."""
    if padding <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (padding,) * 4, mode=mode)
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (top[:, None] + torch.arange(h))[:, None, :, None]
    cols = (left[:, None] + torch.arange(w))[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    channels = torch.arange(images.shape[1])[None, :, None, None]
    return padded[batch, channels, rows, cols]


def random_hflip(images: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator) < p
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


@AUGMENTS.register("resnet")
def resnet_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """FlexConv's ``resnet``: horizontal flip, then a random crop padded by size//8."""
    images = random_hflip(images, generator)
    return random_crop(images, images.shape[-1] // 8, generator)


@AUGMENTS.register("resnet-reflect")
def resnet_reflect_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """MIMOConv's variant: flip and a 32-crop of the reflect-padded image (pad 4 at 32)."""
    images = random_hflip(images, generator)
    return random_crop(images, images.shape[-1] // 8, generator, mode="reflect")


@AUGMENTS.register("none", aliases=["None", "null"])
def no_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return images


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize to ``size`` x ``size`` with antialiased bilinear interpolation."""
    if size <= 0 or images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean_t) / std_t
