"""The researchers' own input pipelines: torchvision datasets, PIL transforms, a DataLoader.

These are what raysys is compared against. torchvision is imported on first use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from raysys.data.formats.base import IMAGENET_MEAN, IMAGENET_STD


def cifar10(root: Path, train: bool, transform):
    """torchvision's ``CIFAR10`` (download=False) on the pickle batches under ``root``.

    The md5 sums of the official files are not checked: the benchmark writes
    its own batches in the same format.
    """
    from torchvision.datasets import CIFAR10

    class LocalCIFAR10(CIFAR10):
        train_list = [[f"data_batch_{i}", None] for i in range(1, 6)]
        test_list = [["test_batch", None]]
        meta = {**CIFAR10.meta, "md5": None}

    return LocalCIFAR10(str(root), train=train, transform=transform, download=False)


def cifar_transform(mean: Sequence[float], std: Sequence[float], train: bool = True):
    """FlexConv's CIFAR training transform: RandomCrop(32, padding=4), flip, ToTensor, Normalize."""
    import torchvision.transforms as T

    steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])


def imagenet_transform(train: bool = True, size: int = 224):
    """The ImageNet recipe: RandomResizedCrop + flip (train) or Resize(256) + CenterCrop (val)."""
    import torchvision.transforms as T

    steps = (
        [T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
        if train
        else [T.Resize(int(size / 0.875)), T.CenterCrop(size)]
    )
    return T.Compose([*steps, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def image_folder(root: Path, transform):
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(root), transform=transform)


def data_loader(dataset, batch_size: int, workers: int, shuffle: bool = True):
    """A DataLoader as a training script sets it up: shuffled, ``workers`` processes kept alive."""
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, persistent_workers=workers > 0,
    )
