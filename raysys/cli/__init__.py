"""The command line: ``python -m raysys <command> ...``."""
