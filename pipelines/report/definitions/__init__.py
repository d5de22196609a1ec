"""Registered report definitions; each module registers its paper's reports on import."""
from pipelines.report.definitions import cifar_resnet  # noqa: F401
