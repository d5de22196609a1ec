"""FlexConv (Romero et al., ICLR 2022, rjbruin/flexconv): FlexNets of continuous kernels with learned sizes.

Registers the ``flexconv`` (``net``, ``kernel``, ``conv``, ``mask``) and ``cross_res`` sections and the
``train.mask_params_lr_factor`` / ``train.omega_0_lr_factor`` fields (``config``), the
``flexnet`` model (``models``), the ``resnet-before-resize`` augmentation (``augment``), the ``flexconv`` recipe (``recipe``, with the aliasing
regularizer of ``aliasing``), and the ``run_experiment.py`` / ``run_crossres.py`` translators
(``legacy``). Layers: ``layers``. Presets: ``flexconv/*``. See README.md.
"""
from raysys.families.flexconv import aliasing, augment, config, models, recipe  # noqa: F401  (register)
from raysys.families.flexconv.legacy import run_crossres, run_experiment  # noqa: F401  (register)
