"""Evaluation metrics as pure torch functions (no Ray, no MLflow).

Import the modules directly, e.g. ``from raysys.eval.consistency import shift_agreement``.
"""
