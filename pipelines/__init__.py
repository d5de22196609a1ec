"""Pipelines: end-to-end steps the CLI runs (e.g. preparing dataset shards)."""
