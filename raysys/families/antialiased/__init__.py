"""Antialiased CNNs (Zhang, ICML 2019, adobe/antialiased-cnns): BlurPool before every subsampling.

Registers the ``antialias`` section and the antialiased ``<arch>_lpf<N>`` models of torchvision's
ImageNet architectures (:mod:`.models`, layers in :mod:`.blurpool`, weight checks in :mod:`.weights`;
the plain ``<arch>`` baselines are shared: raysys/models/torchvision_models.py), the recipes
``antialiased``, ``antialiased-finetune``, ``antialiased-resume`` (:mod:`.recipe`), the
``epoch_cosine`` schedule (:mod:`.schedule`), the ``shift-consistency`` and
``diagonal-consistency`` evaluators (:mod:`.evaluators`, metric in :mod:`.consistency`), and the
``main.py`` translator (:mod:`.legacy.main`, published weights in :mod:`.pretrained`). Presets: ``antialiased/*``.
"""
from raysys.families.antialiased import evaluators, models, recipe, schedule  # noqa: F401  (register)
from raysys.families.antialiased.legacy import main  # noqa: F401  (registers the translator)
