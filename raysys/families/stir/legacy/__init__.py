"""Translators of the original STIR command lines (taltstidl/scale-equivariant-cnn).

- :mod:`.train`: ``python scripts/train.py ...`` -> ``raysys train stir/<data> ...``.
"""
