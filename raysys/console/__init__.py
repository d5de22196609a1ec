"""What a raysys command shows on the console: phase lines, the progress display, Ray's output kept aside.

Nothing here imports torch, Ray or MLflow at module level: a command names its
first phase before those imports start (:func:`raysys.console.lines.phase`).
"""
from raysys.console.lines import is_verbose, note, phase, set_verbose

__all__ = ["is_verbose", "note", "phase", "set_verbose"]
