"""MIMOConv's model family: WideResNet, WideISOReLUNet, WideISONet and MIMONet.

Registered as ``<family>-<depth>`` (``model.name=MIMONet-28``), built from the ``mimo``
and ``superposition`` config sections. Depth 28 has [4, 4, 4] blocks per stage, 16 has
[2, 2, 2], 10 (MIMONet only) has [1, 1, 1].
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple

from raysys.errors import ConfigError
from raysys.families.mimoconv import config  # noqa: F401  (registers the config sections)
from raysys.families.mimoconv.models.network import SuperWideNet
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


def _check_positive(key: str, value: int) -> int:
    if int(value) < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value}")
    return int(value)


def mimo_model_kwargs(cfg: Any) -> Dict[str, Any]:
    """SuperWideNet keyword arguments from the ``mimo`` and ``superposition`` sections."""
    arch, sup = cfg.mimo, cfg.superposition
    capacity = _check_positive("superposition.capacity", sup.capacity)
    sup_low = int(sup.sup_low)
    if sup_low < 0 or (sup_low and capacity % sup_low):
        allowed = [n for n in range(1, capacity + 1) if capacity % n == 0]
        raise ConfigError(f"superposition.sup_low={sup_low} must divide superposition.capacity={capacity}: "
                          f"allowed 0 (= capacity) or {allowed}")
    relu_init = arch.relu_parameter_init
    return dict(
        width=_check_positive("mimo.width", arch.width),
        initial_width=_check_positive("mimo.initial_width", arch.initial_width),
        binding=str(sup.binding), capacity=capacity,
        relu_parameter_init=None if relu_init is None else float(relu_init),
        skip_init=bool(arch.skip_init), dirac_init=bool(arch.dirac_init),
        batch_norm_disabled=bool(arch.batch_norm_disabled),
        trainable_keys=not bool(arch.trainable_keys_disabled),
        legacy_iso_init=bool(arch.legacy_iso_init),
    )


def _builder(family: Family, depth: int):
    def build(cfg: Any, spec: InputSpec) -> SuperWideNet:
        return SuperWideNet(DEPTHS[depth], spec.num_classes, spec.channels, activation=family.activation,
                            isometric=family.isometric, **mimo_model_kwargs(cfg))

    return build


for _name, _family in FAMILIES.items():
    for _depth in _family.depths:
        register_model(f"{_name}-{_depth}")(_builder(_family, _depth))

__all__ = ["SuperWideNet", "FAMILIES", "DEPTHS", "mimo_model_kwargs"]
