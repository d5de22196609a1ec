"""Shared architectures (the CIFAR ResNets) and the model registry; each family registers its own models."""
from raysys.models import cifar_resnet  # noqa: F401  (registers the CIFAR ResNets)
from raysys.models.registry import MODELS, InputSpec, build_model, register_model

__all__ = ["MODELS", "InputSpec", "build_model", "register_model"]
