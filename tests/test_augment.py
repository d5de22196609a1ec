"""Batch augmentations: same result as the per-image definition, seeded, normalised."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from raysys.data.augment import AUGMENTS, normalize, random_crop, random_hflip, resize


def test_random_crop_equals_per_image_crops():
    images = torch.rand(6, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    out = random_crop(images, 2, gen)
    gen = torch.Generator().manual_seed(0)
    top = torch.randint(0, 5, (6,), generator=gen)
    left = torch.randint(0, 5, (6,), generator=gen)
    padded = F.pad(images, (2, 2, 2, 2))
    for i in range(6):
        expected = padded[i, :, top[i] : top[i] + 8, left[i] : left[i] + 8]
        assert torch.equal(out[i], expected)


def test_flip_flips_only_some_images():
    images = torch.rand(64, 1, 4, 4)
    out = random_hflip(images, torch.Generator().manual_seed(1))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_augmentation_is_a_function_of_the_seed():
    images = torch.rand(16, 3, 32, 32)
    resnet = AUGMENTS.get("resnet")
    a = resnet(images, torch.Generator().manual_seed(7))
    b = resnet(images, torch.Generator().manual_seed(7))
    c = resnet(images, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == images.shape


def test_none_augmentation_and_normalize():
    images = torch.full((2, 3, 4, 4), 0.5)
    assert torch.equal(AUGMENTS.get("None")(images, torch.Generator()), images)
    out = normalize(images, (0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    assert torch.allclose(out[:, 0], torch.zeros(1)) and torch.allclose(out[:, 1], torch.ones(1))


def test_resize():
    images = torch.rand(2, 3, 32, 32)
    assert resize(images, 16).shape == (2, 3, 16, 16)
    assert resize(images, 0) is images
