"""Readers of the original on-disk dataset formats, and the registry naming them.

Importing this package registers every dataset in :data:`DATASETS`.
"""

from raysys.data.formats.base import DATASETS, DatasetSpec, SourceDataset, SplitSource

# Each reader module registers its datasets on import.
from raysys.data.formats import (
    cifar,
    downsampled_imagenet,
    idx,
    imagefolder,
    stir_npz,
    stl10,
)  # noqa: F401,E402


def get_dataset(name: str) -> DatasetSpec:
    """The spec of a dataset by name or alias; ConfigError with suggestions if unknown."""
    return DATASETS.get(name)


__all__ = ["DATASETS", "DatasetSpec", "SourceDataset", "SplitSource", "get_dataset"]
