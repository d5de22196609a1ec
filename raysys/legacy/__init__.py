"""Translators from each original command line to a raysys command."""
from raysys.legacy.registry import TRANSLATORS, Translation, register_translator, translate
from raysys.legacy import flexconv_run_experiment, flexconv_run_crossres  # noqa: F401,E402
from raysys.legacy import train_superposition, validate_dynamic  # noqa: F401,E402  (MIMOConv)
from raysys.legacy import antialiased_main  # noqa: F401,E402  (antialiased-cnns main.py)
from raysys.legacy import stir_train  # noqa: F401,E402  (scale-equivariant-cnn scripts/train.py)

__all__ = ["TRANSLATORS", "Translation", "register_translator", "translate"]
