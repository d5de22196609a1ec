"""The papers raysys reproduces: one subpackage per paper, found and imported by :func:`discover`.

A family is a folder ``raysys/families/<name>/``; its ``__init__`` imports the modules that
register the paper's config sections, models, recipe, evaluators and legacy translators.
Nothing else lists the families: adding a paper means adding a folder.

**Complete on import.** Every registry lookup (:class:`raysys.registry.Registry`) and the
config schema (:mod:`raysys.config.schema`) call :func:`discover` first, so a process sees
every family whatever it imported first, and so does a fresh Ray worker. :func:`discover`
imports the shared modules that register names (:data:`SHARED`), then each family, once. A
call made while discovery is importing (a module that looks something up at import time)
returns at once: the re-entrancy guard.

**Ownership.** A registration belongs to the family whose folder holds the module that made it
(:func:`registering_module`), or whose ``__init__`` declared that module with :func:`owns`
(modules that still live in the shared packages: issue 16 item 1 moves them into the folders).
Registrations made anywhere else are shared. A run's config holds a family's sections only when
the run uses the family (:func:`raysys.config.schema.used_families`).

This module imports nothing but the standard library, so any module may import it.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
import threading
from typing import Dict, List, Optional

# Shared machinery whose modules register names a config may refer to (datasets,
# augmentations, normalisations, evaluation crops, the CIFAR ResNets, optimizers and schedules, the default
# recipe, the generic evaluators, the legacy-translator registry).
SHARED = (
    "raysys.data.formats",
    "raysys.data.augment",
    "raysys.data.normalization",
    "raysys.data.eval_images",
    "raysys.models",
    "raysys.train.optim",
    "raysys.train.recipes",
    "raysys.eval.evaluators",
    "raysys.legacy",
)

_OWNED: Dict[str, str] = {}  # module (or package) outside raysys/families -> family
_FOUND: List[str] = []  # family names, in discovery order
_lock = threading.RLock()
_done = False
_running = False


def discover() -> None:
    """Import :data:`SHARED` and every family subpackage, once (idempotent, re-entrant, thread-safe).

    If an import fails the error propagates and the next call tries again.
    """
    global _done, _running
    if _done:
        return
    with _lock:
        if _done or _running:  # _running: called again from a module this call is importing
            return
        _running = True
        try:
            for module in SHARED:
                importlib.import_module(module)
            found = []
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
                if info.ispkg and not info.name.startswith("_"):
                    importlib.import_module(f"{__name__}.{info.name}")
                    found.append(info.name)
            _FOUND[:] = found
            _done = True
        finally:
            _running = False


def names() -> List[str]:
    """Every family's name (its folder under raysys/families)."""
    discover()
    return list(_FOUND)


def owns(package: str, *modules: str) -> None:
    """Declare that ``modules`` (and their submodules) belong to the family ``package``, and import them.

    A family's ``__init__`` calls ``owns(__name__, "raysys.models.<module>", ...)`` for its modules
    that do not live in its folder yet.
    """
    family = package.rsplit(".", 1)[-1]
    for module in modules:
        _OWNED[module] = family
    for module in modules:
        importlib.import_module(module)


def family_of(module: Optional[str]) -> Optional[str]:
    """The family that owns ``module`` (a dotted module name), or None for shared code."""
    if not module:
        return None
    discover()
    prefix = f"{__name__}."
    if module.startswith(prefix):
        return module[len(prefix):].split(".", 1)[0]
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        family = _OWNED.get(".".join(parts[:end]))
        if family:
            return family
    return None


def registering_module(depth: int = 1) -> Optional[str]:
    """The module whose top-level code is making the current registration.

    That is the innermost module-level frame on the stack: the module being imported that
    applies a decorator or calls ``Registry.add`` (directly or through a helper such as
    ``register_model``). A registration made from a function at run time, not while a module
    is imported, gets the outermost script's module (``__main__``): shared.
    """
    frame = sys._getframe(depth)
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            return frame.f_globals.get("__name__")
        frame = frame.f_back
    return None
