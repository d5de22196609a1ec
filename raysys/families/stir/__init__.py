"""STIR (Altstidl et al., "Just a Matter of Scale?", taltstidl/scale-equivariant-cnn): scale equivariance.

Registers the ``stir`` section (evaluation scenario, kernel size, interpolation, analysis),
the ``stir_<model>`` models, the ``stir`` recipe, and the ``scripts/train.py`` translator.
Presets: ``stir/*``. See README.md in this folder.
"""
from raysys.families.stir import scenarios  # noqa: F401  the ``stir`` config section
from raysys.families.stir import models  # noqa: F401  the ``stir_<model>`` models
from raysys.families.stir import recipe  # noqa: F401  the ``stir`` recipe (imports .analysis)
from raysys.families.stir.legacy import train  # noqa: F401  the ``scripts/train.py`` translator
