"""FlexConv's cross-resolution augmentation: flip and pad-crop at the stored size, then resize.

The original's CIFAR-10 transform (datasets/cifar10.py, ``augmentations_resnet``) flips, takes a
random 32 px crop padded by 4, then resizes to ``cross_res.resize``: the 16 px source phase
sees crops of the full-size image, not 16 px crops padded by 2. ``train.augment=resnet-before-resize``
does that here (the crossres CIFAR-10 presets); at the stored size it is ``resnet``.
"""
from __future__ import annotations

import torch

from raysys.data.augment import AUGMENTS, before_resize, resnet_augment


@AUGMENTS.register("resnet-before-resize")
@before_resize
def resnet_before_resize(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``resnet`` (flip, crop padded by side // 8) on the stored-size images; the stream resizes after."""
    return resnet_augment(images, generator)
