"""Translators from each original command line to a raysys command."""
from raysys.legacy.registry import TRANSLATORS, Translation, register_translator, translate

__all__ = ["TRANSLATORS", "Translation", "register_translator", "translate"]
