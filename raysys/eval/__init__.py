"""Evaluation metrics as pure torch functions (no Ray, no MLflow).

Import the modules directly, e.g. ``from raysys.families.antialiased.consistency import shift_agreement``.
"""
