"""Per-channel normalisation constants, chosen by ``train.normalize``."""
from __future__ import annotations

from typing import Callable, Tuple

from raysys.data.formats import DatasetSpec
from raysys.data.formats.base import IMAGENET_MEAN, IMAGENET_STD
from raysys.errors import DataError
from raysys.registry import Registry

Stats = Tuple[Tuple[float, ...], Tuple[float, ...]]
NORMALIZATIONS: Registry[Callable[[DatasetSpec, dict, int], Stats]] = Registry("normalization", config_key="train.normalize")


@NORMALIZATIONS.register("dataset")
def dataset_constants(spec: DatasetSpec, manifest: dict, channels: int) -> Stats:
    """The constants the original code used for this dataset (e.g. CIFAR-10's)."""
    return tuple(spec.mean), tuple(spec.std)


@NORMALIZATIONS.register("imagenet")
def imagenet_constants(spec: DatasetSpec, manifest: dict, channels: int) -> Stats:
    """ImageNet mean/std, as FlexConv normalises every image dataset."""
    if channels != 3:
        return (sum(IMAGENET_MEAN) / 3,) * channels, (sum(IMAGENET_STD) / 3,) * channels
    return IMAGENET_MEAN, IMAGENET_STD


@NORMALIZATIONS.register("computed")
def computed_constants(spec: DatasetSpec, manifest: dict, channels: int) -> Stats:
    """Mean/std measured over the train split when the shards were written."""
    split = manifest["splits"].get("train", {})
    if not split.get("mean"):
        raise DataError(f"the manifest of {manifest['dataset']!r} has no computed mean/std; use train.normalize=dataset")
    return tuple(split["mean"]), tuple(split["std"])


@NORMALIZATIONS.register("none", aliases=["None"])
def no_normalization(spec: DatasetSpec, manifest: dict, channels: int) -> Stats:
    return (0.0,) * channels, (1.0,) * channels


def normalization(name: str, spec: DatasetSpec, manifest: dict, channels: int) -> Stats:
    return NORMALIZATIONS.get(name)(spec, manifest, channels)
