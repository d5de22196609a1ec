"""FlexConv (Romero et al., ICLR 2022, rjbruin/flexconv): FlexNets of continuous kernels with learned sizes.

Registers the ``net``, ``kernel``, ``conv``, ``mask`` and ``cross_res`` sections and the
``train.mask_params_lr_factor`` / ``train.omega_0_lr_factor`` fields, the ``flexnet`` model,
the ``flexconv`` recipe, and the ``run_experiment.py`` / ``run_crossres.py`` translators.
Presets: ``flexconv/*``.
"""
from raysys.families import owns

owns(
    __name__,
    "raysys.models.flexnet_config",
    "raysys.models.flexnet",
    "raysys.train.recipes.aliasing",
    "raysys.train.recipes.flexconv",
    "raysys.legacy.flexconv_flags",
    "raysys.legacy.flexconv_run_experiment",
    "raysys.legacy.flexconv_run_crossres",
)
