"""Antialiased CNNs (Zhang, ICML 2019, adobe/antialiased-cnns): BlurPool before every subsampling.

Registers the ``antialias`` section, torchvision's ImageNet architectures ``<arch>`` and
their antialiased ``<arch>_lpf<N>``, and the ``main.py`` translator. Presets: ``antialiased/*``.
"""
from raysys.families import owns

owns(
    __name__,
    "raysys.models.antialiased",
    "raysys.legacy.antialiased_main",
)
