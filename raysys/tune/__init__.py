"""Sweeps: tune spaces expanded into trials, run by Ray Tune, idempotent against MLflow."""
