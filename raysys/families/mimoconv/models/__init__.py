"""MIMOConv's model family: WideResNet, WideISOReLUNet, WideISONet and MIMONet.

Registered as ``<family>-<depth>`` (``model.name=MIMONet-28``). Each entry is a factory
with plain keyword arguments, usable without raysys's config::

    create_model("MIMONet-28", num_classes=10, width=10, initial_width=4, binding="HRR", capacity=4)

and an adapter (:func:`mimo_model_kwargs`) that reads them from the ``mimo`` and
``superposition`` config sections. Depth 28 has [4, 4, 4] blocks per stage, 16 has
[2, 2, 2], 10 (MIMONet only) has [1, 1, 1].
"""
from __future__ import annotations

import functools
from typing import Any, Dict, NamedTuple, Optional

from raysys.errors import ConfigError
from raysys.families.mimoconv import config  # noqa: F401  (registers the config sections)
from raysys.families.mimoconv.models.network import SuperWideNet
from raysys.families.mimoconv.models.original_weights import load_original_weights
from raysys.models.registry import InputSpec, register_model

DEPTHS: Dict[int, list] = {10: [1, 1, 1], 16: [2, 2, 2], 28: [4, 4, 4]}


class Family(NamedTuple):
    activation: str
    isometric: bool
    depths: tuple


# the original's model table: block type and whether the net is a SuperWideISONet
FAMILIES: Dict[str, Family] = {
    "WideResNet": Family("relu", False, (16, 28)),
    "WideISOReLUNet": Family("relu", True, (16, 28)),
    "WideISONet": Family("srelu", True, (16, 28)),
    "MIMONet": Family("prelu", True, (10, 16, 28)),
}


def wide_net(
    family: str, depth: int, *, num_classes: int = 10, in_channels: int = 3, width: int = 10,
    initial_width: int = 1, binding: str = "None", capacity: int = 1, relu_parameter_init: Optional[float] = None,
    skip_init: bool = False, dirac_init: bool = False, batch_norm_disabled: bool = False,
    trainable_keys: bool = True, legacy_iso_init: bool = False, weights: str = "",
) -> SuperWideNet:
    """The ``family``-``depth`` network; ``weights``: a local checkpoint (the original's or raysys's) loaded strictly."""
    kind = FAMILIES[family]
    model = SuperWideNet(
        DEPTHS[depth], num_classes, in_channels, width=width, initial_width=initial_width,
        activation=kind.activation, isometric=kind.isometric, binding=binding, capacity=capacity,
        relu_parameter_init=relu_parameter_init, skip_init=skip_init, dirac_init=dirac_init,
        batch_norm_disabled=batch_norm_disabled, trainable_keys=trainable_keys, legacy_iso_init=legacy_iso_init,
    )
    if weights:
        load_original_weights(model, weights)
    return model


def _check_positive(key: str, value: int) -> int:
    if int(value) < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value}")
    return int(value)


def mimo_model_kwargs(cfg: Any, spec: InputSpec) -> Dict[str, Any]:
    """The adapter: :func:`wide_net` keyword arguments from the ``mimo`` and ``superposition`` sections."""
    arch, sup = cfg.mimo, cfg.superposition
    capacity = _check_positive("superposition.capacity", sup.capacity)
    sup_low = int(sup.sup_low)
    if sup_low < 0 or (sup_low and capacity % sup_low):
        allowed = [n for n in range(1, capacity + 1) if capacity % n == 0]
        raise ConfigError(f"superposition.sup_low={sup_low} must divide superposition.capacity={capacity}: "
                          f"allowed 0 (= capacity) or {allowed}")
    relu_init = arch.relu_parameter_init
    return dict(
        num_classes=spec.num_classes, in_channels=spec.channels,
        width=_check_positive("mimo.width", arch.width),
        initial_width=_check_positive("mimo.initial_width", arch.initial_width),
        binding=str(sup.binding), capacity=capacity,
        relu_parameter_init=None if relu_init is None else float(relu_init),
        skip_init=bool(arch.skip_init), dirac_init=bool(arch.dirac_init),
        batch_norm_disabled=bool(arch.batch_norm_disabled),
        trainable_keys=not bool(arch.trainable_keys_disabled),
        legacy_iso_init=bool(arch.legacy_iso_init),
        weights=str(arch.weights or ""),
    )


for _name, _family in FAMILIES.items():
    for _depth in _family.depths:
        register_model(f"{_name}-{_depth}", adapter=mimo_model_kwargs)(functools.partial(wide_net, _name, _depth))

__all__ = ["SuperWideNet", "FAMILIES", "DEPTHS", "wide_net", "mimo_model_kwargs"]
