"""Batch augmentations as tensor operations on whole batches.

Every function takes and returns a batch (N, C, H, W) of any dtype: the stream
augments uint8 pixels (4x less memory traffic than float), then converts and
normalises in one step (:func:`to_normalized_float`); float batches in [0, 1]
work the same. Randomness comes from an explicit ``torch.Generator`` so a
batch's augmentation is a pure function of its seed.
"""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

import torch
import torch.nn.functional as F

from raysys.data.buffers import BATCHES
from raysys.registry import Registry

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
# to_normalized_float converts this many bytes of float output at a time (about one L2 cache):
# copy, scale and shift then find the pixels in cache. One 224 px image; 85 CIFAR images.
NORMALIZE_CHUNK_BYTES = 1 << 20
AUGMENTS: Registry[Augment] = Registry("augmentation", config_key="train.augment")


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator, mode: str = "constant") -> torch.Tensor:
    """Pad by ``padding`` and take one random crop of the original size per image."""
    n, _, h, w = images.shape
    if padding <= 0 or n == 0:
        return images
    padded = F.pad(images, (padding,) * 4, mode=mode)
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator).tolist()
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator).tolist()
    # One strided copy per image: ~4x faster than a 4-index gather over the batch.
    return torch.stack([padded[i, :, t : t + h, l : l + w] for i, (t, l) in enumerate(zip(top, left))])


def random_hflip(images: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = (torch.rand(images.shape[0], generator=generator) < p).tolist()
    if not flip:
        return images
    # Per-image flips, stacked: ~10x faster than flip + where over a 224 px batch.
    return torch.stack([image.flip(-1) if f else image for image, f in zip(images, flip)])


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


def square_crop(kind: str):
    """Mark an augmentation with the crop that squares variable-size (JPEG) images.

    ``kind`` names an entry of ``raysys.data.jpeg.CROPS``; unmarked augmentations
    (and evaluation) use ``center``.
    """

    def mark(augment: Augment) -> Augment:
        augment.square_crop = kind
        return augment

    return mark


def before_resize(augment: Augment) -> Augment:
    """Mark an augmentation to run on raw images at their stored size, before ``data.resize``.

    The stream then decodes at the stored size, augments, and resizes to the model's size
    (FlexConv's cross-resolution source phase: crop at 32, then resize to 16). JPEG images
    are always augmented at the model's size.
    """
    augment.before_resize = True
    return augment


@AUGMENTS.register("imagenet")
@square_crop("random-resized")
def imagenet_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """ImageNet training: RandomResizedCrop (while decoding JPEGs), then a horizontal flip."""
    return random_hflip(images, generator)


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


def normalization_affine(
    mean: Sequence[float], std: Sequence[float], device: torch.device,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), float32 (C, 1, 1) on ``device``: ``(x / 255 - mean) / std == x * scale + shift``."""
    std_t = torch.tensor(std, dtype=torch.float64).view(-1, 1, 1)
    scale = (1.0 / (255.0 * std_t)).float()
    shift = (-torch.tensor(mean, dtype=torch.float64).view(-1, 1, 1) / std_t).float()
    return scale.to(device), shift.to(device)


def to_normalized_float(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 pixels -> contiguous float32 ``(x / 255 - mean) / std``: a multiply, then an add.

    On the CPU a few images at a time (:data:`NORMALIZE_CHUNK_BYTES`), so each chunk is
    converted, scaled and shifted while in cache; the same float32 operations in the
    same order as over the whole batch, so the same bits. The batch's memory comes from
    :data:`raysys.data.buffers.BATCHES`: a dropped batch's, once nothing holds it.
    """
    # On the images' device: GPU-decoded JPEG batches (data.jpeg_device=cuda) stay on the GPU.
    scale, shift = normalization_affine(mean, std, images.device)
    if images.device.type != "cpu":
        return images.float().contiguous().mul_(scale).add_(shift)
    out = BATCHES.empty(images.shape, torch.float32)
    chunk = max(1, NORMALIZE_CHUNK_BYTES // max(1, out[:1].numel() * out.element_size()))
    for start in range(0, images.shape[0], chunk):
        out[start : start + chunk].copy_(images[start : start + chunk]).mul_(scale).add_(shift)
    return out
