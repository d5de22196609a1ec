"""Importing this module registers every named thing a Config can refer to.

Models, datasets, normalisations, optimizers, schedules, augmentations,
recipes and legacy translators all register on import; family packages add
their modules here.
"""
import raysys.data.augment  # noqa: F401
import raysys.data.formats  # noqa: F401
import raysys.data.normalization  # noqa: F401
import raysys.legacy  # noqa: F401
import raysys.models  # noqa: F401
import raysys.models.antialiased  # noqa: F401
import raysys.models.flexnet  # noqa: F401
import raysys.train.optim  # noqa: F401
import raysys.train.recipes  # noqa: F401
