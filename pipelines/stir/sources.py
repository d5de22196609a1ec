"""The registry of STIR sources: name -> how to build its arrays."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

from raysys.data.formats.stir_npz import StirArrays
from raysys.registry import Registry

# build(source_dir, seed, instances, **options) -> arrays; instances None = the original's count.
Builder = Callable[..., StirArrays]


@dataclass(frozen=True)
class StirSource:
    """A STIR source: its builder, and what the user must supply."""

    name: str
    build: Builder
    needs_source: bool  # True: --source names a folder of original files
    instances: int  # instances per class and split in the original
    description: str
    options: Dict[str, str] = field(default_factory=dict)  # build's keyword options and defaults (emoji: glyphs)


STIR_SOURCES: "Registry[StirSource]" = Registry("STIR source", discover=False)


def register_source(name: str, *, needs_source: bool, instances: int, description: str,
                    options: Optional[Dict[str, str]] = None):
    """Decorator registering ``build`` as the STIR source ``name`` (``options``: its extra keywords, with defaults)."""

    def register(build: Builder) -> Builder:
        STIR_SOURCES.add(name, StirSource(name, build, needs_source, instances, description, dict(options or {})))
        return build

    return register
