"""The validation images of the consistency evaluations: ``Resize(S) + CenterCrop(S)``.

The original evaluates ``-es``/``-ed`` on 256x256 images (``Resize(256)`` +
``CenterCrop(256)``) and crops 224 windows from them. The JPEG stream's
``center`` policy is ``Resize(S / 0.875) + CenterCrop(S)`` (accuracy), so this
module adds the ``short-side`` crop policy and the ``eval-full`` augmentation
(no randomness) that selects it. The evaluation driver picks ``eval-full`` when
an evaluator needs images larger than the model's input (a margin to shift in).
torchvision is imported on first use, as in :mod:`raysys.data.jpeg`.
"""
from __future__ import annotations

import torch

from raysys.data import jpeg
from raysys.data.augment import AUGMENTS, square_crop

FULL_IMAGE_AUGMENT = "eval-full"


def _same_side(size: int) -> int:
    return size


# Resize the short side to ``size``, then CenterCrop(size); reduced-size decoding (data.jpeg_draft) applies.
jpeg.CROPS.add("short-side", jpeg.short_side_policy(_same_side))


@AUGMENTS.register(FULL_IMAGE_AUGMENT)
@square_crop("short-side")
def full_image(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Evaluation images for shifted crops: Resize(S) + CenterCrop(S), nothing random."""
    return images
