"""Batch augmentations: same result as the per-image definition, seeded, normalised."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from raysys.data.augment import AUGMENTS, normalize, random_crop, random_hflip, resize, to_normalized_float


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


def old_to_normalized_float(images, mean, std):
    """The whole-batch formula before the chunked one: float, contiguous, one multiply, one add."""
    std_t = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    scale = (1.0 / (255.0 * std_t)).float()
    shift = (-torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1) / std_t).float()
    return images.float().contiguous().mul_(scale).add_(shift)


@pytest.mark.parametrize("shape", [(5, 3, 224, 224), (70, 3, 32, 32), (3, 1, 28, 28), (0, 3, 8, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_chunked_normalization_is_the_whole_batch_formula_bit_for_bit(shape, channels_last):
    mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if shape[1] == 3 else ((0.1307,), (0.3081,))
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    out = to_normalized_float(images, mean, std)
    assert out.dtype == torch.float32 and out.is_contiguous() and out.shape == images.shape
    assert torch.equal(out, old_to_normalized_float(images, mean, std))


def test_normalization_chunks_cover_the_batch(monkeypatch):
    from raysys.data import augment

    monkeypatch.setattr(augment, "NORMALIZE_CHUNK_BYTES", 3 * 4 * 4 * 4 * 2)  # two images at a time, 7 in all
    images = torch.randint(0, 256, (7, 3, 4, 4), dtype=torch.uint8)
    expected = old_to_normalized_float(images, (0.5,) * 3, (0.25,) * 3)
    assert torch.equal(to_normalized_float(images, (0.5,) * 3, (0.25,) * 3), expected)
