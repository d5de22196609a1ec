"""Shared architectures (the CIFAR ResNets, torchvision's ImageNet classifiers) and the model registry;
each family registers its own models."""
from raysys.models import cifar_resnet, torchvision_models  # noqa: F401  (register the shared models)
from raysys.models.registry import MODELS, InputSpec, build_model, create_model, model_kwargs, register_model

__all__ = ["MODELS", "InputSpec", "build_model", "create_model", "model_kwargs", "register_model"]
