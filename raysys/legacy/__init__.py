"""Translators from each original command line to a raysys command.

Each family registers its translators (raysys/families); a lookup in :data:`TRANSLATORS`
discovers every family first.
"""
from raysys.legacy.registry import TRANSLATORS, Translation, register_translator, translate

__all__ = ["TRANSLATORS", "Translation", "register_translator", "translate"]
