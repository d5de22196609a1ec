"""MLflow -> the papers' tables and figures (``python -m raysys report <name>``)."""
