"""Translator of antialiased-cnns' command line (its ImageNet example's ``main.py``)."""
