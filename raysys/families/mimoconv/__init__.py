"""MIMOConv (Menet et al., ICLR 2024, IBM/mimo-conv): several images in superposition through one CNN.

Registers the ``mimo``, ``superposition`` and ``mimo_recipe`` sections, the
``<WideResNet|WideISOReLUNet|WideISONet|MIMONet>-<depth>`` models and their bindings, the
``mimo`` recipe, the ``dynamic`` evaluator, and the ``train_superposition.py`` /
``validate_dynamic.py`` translators. Presets: ``mimoconv/*``.
"""
from raysys.families import owns

owns(
    __name__,
    "raysys.nn.binding",
    "raysys.models.mimo",
    "raysys.train.recipes.mimo",
    "raysys.eval.superposition",
    "raysys.legacy.mimo_flags",
    "raysys.legacy.train_superposition",
    "raysys.legacy.validate_dynamic",
)
