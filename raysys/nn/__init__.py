"""Layers of the four families (torch only: no Ray, no MLflow).

Import the layer modules directly, e.g. ``from raysys.nn.blurpool import BlurPool``.
"""
