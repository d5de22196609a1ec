"""Registered report definitions; each module registers its paper's reports on import."""
from pipelines.report.definitions import cifar_resnet  # noqa: F401
from pipelines.report.definitions import flexconv  # noqa: F401
from pipelines.report.definitions import mimoconv  # noqa: F401
from pipelines.report.definitions import antialiased  # noqa: F401
from pipelines.report.definitions import stir  # noqa: F401
