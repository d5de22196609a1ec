"""The MIMOConv config sections: ``mimo`` (architecture) and ``superposition``.

Key names follow the original's ``train_superposition.py`` flags (``-w``, ``-i``,
``-p``, ``-k``, ``-q``, ``-z``, ``-v``, ``-s``, ``-u``) so its command lines map one
to one. The architecture itself is chosen with ``model.name`` (``MIMONet-28``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from raysys.config import renames
from raysys.config.schema import config_section


@config_section("mimo")
@dataclass
class MimoConfig:
    """Wide (ISO/MIMO) ResNet options shared by every model of the family."""

    # Channel multiplier of the three stages (16, 32, 64 channels times width).
    width: int = 10
    # Channel multiplier of the stem conv (16 * initial_width), not affected by width.
    initial_width: int = 1
    # Initial SReLU offset (WideISONet, model default -1) or PReLU slope (MIMONet,
    # model default 0.5). null = the model's default; ReLU models refuse a value.
    relu_parameter_init: Optional[float] = None
    # SkipInit: block output alpha * branch + shortcut with a learned alpha starting at 0.
    skip_init: bool = False
    # Dirac-initialise the isometric convs (ISO nets only).
    dirac_init: bool = False
    # Replace every BatchNorm by the identity.
    batch_norm_disabled: bool = False
    # Freeze the binding keys after initialisation.
    trainable_keys_disabled: bool = False
    # Reproduce the original's effective ISO-net init: its leaky-ReLU Kaiming re-init
    # of the block convs never ran (isinstance on a class), so they keep the ReLU gain.
    legacy_iso_init: bool = False
    # A local checkpoint loaded strictly into the model when it is built: the original's
    # <identifier>_model.pt (validate_dynamic.py -c), a raysys state.pt or a bare state dict.
    weights: str = ""
    # Evaluate as the original (it never calls model.eval()): BatchNorm in training mode, so
    # each evaluation batch is normalised with its own statistics and the running statistics
    # move towards the test batches' (the training loop and `raysys eval`). See docs/fidelity.md.
    eval_batch_stats: bool = False


@config_section("superposition")
@dataclass
class SuperpositionConfig:
    """Computation in superposition: binding, capacity N and the dynamic (sup_low) mode."""

    # "None", "HRR" or "MBAT".
    binding: str = "None"
    # Superposition capacity N: images bundled per forward at full speed.
    capacity: int = 1
    # Images bundled in the low-demand mode; must divide capacity (0 = capacity).
    sup_low: int = 0
    # Fraction of training batches at capacity (the rest at sup_low).
    sup_frequency: float = 1.0


# Keys added since runs were first recorded; a run recorded before them behaved as these values.
renames.added_key("mimo.weights", "")
renames.added_key("mimo.eval_batch_stats", False)
