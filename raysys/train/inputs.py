"""The model's input for a Config: from the prepared shards, else the dataset's spec."""
from __future__ import annotations

from raysys.data.formats import get_dataset
from raysys.data.shards import load_manifest
from raysys.errors import DataError
from raysys.models import InputSpec


def input_spec(cfg) -> InputSpec:
    """Channels, side length and classes; works before any data is prepared."""
    dataset = get_dataset(cfg.data.name)
    channels, size, classes = dataset.channels, dataset.size or dataset.nominal_size, dataset.num_classes
    try:
        manifest = load_manifest(cfg.data.path)
        image = manifest["image"]
        channels, classes = int(image["channels"]), int(manifest["num_classes"])
        size = int(image.get("height") or size)
    except DataError:
        pass
    size = cfg.data.resize or size
    return InputSpec(cfg.model.in_channels or channels, size, cfg.model.num_classes or classes)
