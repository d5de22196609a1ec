"""Antialiased CNNs (Zhang, ICML 2019, adobe/antialiased-cnns): BlurPool before every subsampling.

Registers the ``antialias`` section, torchvision's ImageNet architectures ``<arch>`` and
their antialiased ``<arch>_lpf<N>`` (:mod:`.models`, layers in :mod:`.blurpool`), the
``shift-consistency`` and ``diagonal-consistency`` evaluators (:mod:`.evaluators`, metric in
:mod:`.consistency`), and the ``main.py`` translator (:mod:`.legacy.main`). Presets: ``antialiased/*``.
"""
from raysys.families.antialiased import evaluators, models  # noqa: F401  (register)
from raysys.families.antialiased.legacy import main  # noqa: F401  (registers the translator)
