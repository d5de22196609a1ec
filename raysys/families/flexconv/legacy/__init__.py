"""Translators of FlexConv's command lines (``run_experiment.py``, ``run_crossres.py``); rules in ``flags``."""
