"""Importing this module registers every named thing a Config can refer to.

Models, datasets, normalisations, optimizers, schedules, augmentations,
recipes and legacy translators all register on import; family packages add
their modules here.
"""
import raysys.data.augment  # noqa: F401
import raysys.data.formats  # noqa: F401
import raysys.data.normalization  # noqa: F401
import raysys.data.stir_scenarios  # noqa: F401
import raysys.legacy  # noqa: F401
import raysys.models  # noqa: F401
import raysys.models.antialiased  # noqa: F401
import raysys.models.flexnet  # noqa: F401
import raysys.models.mimo  # noqa: F401
import raysys.models.stir  # noqa: F401
import raysys.train.optim  # noqa: F401
import raysys.train.recipes  # noqa: F401
import raysys.train.recipes.flexconv  # noqa: F401
import raysys.train.recipes.mimo  # noqa: F401
import raysys.train.recipes.stir  # noqa: F401
import raysys.eval.crops  # noqa: F401
import raysys.eval.evaluators  # noqa: F401
