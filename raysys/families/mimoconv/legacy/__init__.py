"""Translators of the original's ``train_superposition.py`` and ``validate_dynamic.py`` command lines.

:mod:`.flags` holds the original's argparse flags, shared by both translators.
"""
from raysys.families.mimoconv.legacy import train_superposition  # noqa: F401  (registers the translator)
from raysys.families.mimoconv.legacy import validate_dynamic  # noqa: F401  (registers the translator)
