"""The equivariance error of the STIR paper's evaluation (``--equivariance``).

A feature map of an image whose object has size s at (left, top) is cropped
to the object (the map is ``64 - width`` pixels smaller than the image, so
the object covers s minus that many pixels); the map of the same object at
another size is resized bicubically to the reference crop, and the error is
‖ref − resized‖² / ‖ref‖².
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PAIRS = ((64, 49), (49, 64), (48, 33), (33, 48), (32, 17), (17, 32))  # the original's six scale pairs


def crop_object(feature_map: torch.Tensor, scale: int, left: int, top: int, canvas: int = 64) -> torch.Tensor:
    """(C, h, w) feature map -> (C, s', s') crop covering the object of size ``scale`` at (left, top)."""
    side = scale - (canvas - feature_map.shape[-1])
    return feature_map[:, top:top + side, left:left + side]


def equivariance_error(reference: torch.Tensor, other: torch.Tensor) -> float:
    """‖ref − bicubic(other → ref size)‖² / ‖ref‖² for two (C, s, s) object crops."""
    resized = F.interpolate(other[None], size=reference.shape[-2:], mode="bicubic")[0]
    return float((reference - resized).pow(2).sum() / reference.pow(2).sum())
