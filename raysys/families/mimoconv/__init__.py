"""MIMOConv (Menet et al., NeurIPS 2023, IBM/multiple-input-multiple-output-nets): several images in superposition through one CNN.

Registers the ``mimo`` and ``superposition`` sections (:mod:`.config`) and ``mimo_recipe``
(:mod:`.recipe`), the ``<WideResNet|WideISOReLUNet|WideISONet|MIMONet>-<depth>`` models
(:mod:`.models`) and their bindings (:mod:`.layers.binding`), the ``mimo`` recipe, the
``dynamic`` evaluator (:mod:`.evaluators`), and the ``train_superposition.py`` /
``validate_dynamic.py`` translators (:mod:`.legacy`). Presets: ``mimoconv/*``. See README.md.
"""
from raysys.families.mimoconv import config  # noqa: F401  (the mimo and superposition sections)
from raysys.families.mimoconv import models  # noqa: F401  (the models; the bindings registry)
from raysys.families.mimoconv import recipe  # noqa: F401  (the mimo recipe and its section)
from raysys.families.mimoconv import evaluators  # noqa: F401  (the dynamic evaluator)
from raysys.families.mimoconv import legacy  # noqa: F401  (the translators)
