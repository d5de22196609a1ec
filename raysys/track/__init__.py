"""MLflow tracking: runs, params, metrics, artifacts, resume of the same run."""
