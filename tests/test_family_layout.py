"""One folder per paper: a family imports no other family, and the shared core imports no family.

The layer order, and that a family's layers and models import no Ray or MLflow, are in
tests/test_layers.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_layers import imports, module_name

FAMILIES = sorted(p.name for p in (REPO / "raysys" / "families").iterdir() if (p / "__init__.py").is_file())
# Entry points may call into a family's own code (its benchmark, its report figures, `raysys stir`).
ENTRY_POINTS = ("raysys/bench/", "raysys/cli/")


def family_imports(path: Path):
    """The families ``path`` imports, at any depth (function-level and relative imports included)."""
    targets = {item.target for item in imports(module_name(path))}
    return {m.split(".")[2] for m in targets if m.startswith("raysys.families.") and m.count(".") >= 2}


def test_there_are_the_four_papers():
    assert FAMILIES == ["antialiased", "flexconv", "mimoconv", "stir"]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_imports_no_other_family(family):
    for path in sorted((REPO / "raysys" / "families" / family).rglob("*.py")):
        others = family_imports(path) - {family}
        assert not others, f"{path.relative_to(REPO)} imports the families {sorted(others)}"


def test_the_shared_core_imports_no_family():
    for path in sorted((REPO / "raysys").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("raysys/families/") or rel.startswith(ENTRY_POINTS):
            continue
        assert not family_imports(path), f"{rel} imports {sorted(family_imports(path))}: look it up in a registry instead"


def test_each_family_has_a_readme_presets_and_registers_something():
    from raysys.config.loader import list_presets
    from raysys.models import MODELS

    papers = {p.paper for p in list_presets()}
    for family in FAMILIES:
        folder = REPO / "raysys" / "families" / family
        assert (folder / "README.md").is_file()
        assert family in papers
        assert any(MODELS.family(name) == family for name in MODELS.names()), family
