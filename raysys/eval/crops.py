"""The validation images of the consistency evaluations: ``Resize(S) + CenterCrop(S)``.

The original evaluates ``-es``/``-ed`` on 256x256 images (``Resize(256)`` +
``CenterCrop(256)``) and crops 224 windows from them. The JPEG stream's
``center`` policy is ``Resize(S / 0.875) + CenterCrop(S)`` (accuracy), so this
module adds the ``short-side`` crop policy and the ``eval-full`` augmentation
(no randomness) that selects it.
"""
from __future__ import annotations

import torch

from raysys.data import jpeg
from raysys.data.augment import AUGMENTS, square_crop

FULL_IMAGE_AUGMENT = "eval-full"


@jpeg.CROPS.register("short-side")
def short_side_crop(image: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Resize the short side to ``size``, then CenterCrop(size)."""
    import torchvision.transforms.v2.functional as TF

    return TF.center_crop(TF.resize(image, [size], antialias=True), [size, size])


@AUGMENTS.register(FULL_IMAGE_AUGMENT)
@square_crop("short-side")
def full_image(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Evaluation images for shifted crops: Resize(S) + CenterCrop(S), nothing random."""
    return images
