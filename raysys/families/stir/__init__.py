"""STIR (Altstidl et al., "Just a Matter of Scale?", taltstidl/scale-equivariant-cnn): scale equivariance.

Registers the ``stir`` section (evaluation scenario, kernel size, interpolation, analysis),
the ``stir_<model>`` models, the ``stir`` recipe, and the ``scripts/train.py`` translator.
Presets: ``stir/*``.
"""
from raysys.families import owns

owns(
    __name__,
    "raysys.data.stir_scenarios",
    "raysys.models.stir",
    "raysys.train.recipes.stir",
    "raysys.legacy.stir_train",
)
