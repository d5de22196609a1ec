"""One folder per paper: a family imports no other family, and the shared core imports no family."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FAMILIES = sorted(p.name for p in (REPO / "raysys" / "families").iterdir() if (p / "__init__.py").is_file())
# Entry points may call into a family's own code (its benchmark, its report figures, `raysys stir`).
ENTRY_POINTS = ("raysys/bench/", "raysys/cli/")


def imported_modules(path: Path):
    """Every module ``path`` imports, at any depth (function-level imports included)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def family_imports(path: Path):
    return {m.split(".")[2] for m in imported_modules(path) if m.startswith("raysys.families.") and m.count(".") >= 2}


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


def test_layers_models_and_the_registries_import_no_ray_or_mlflow():
    """Models are usable from plain Python: their import closure (and the families' registrations) has no Ray or MLflow."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        + "".join(f"import raysys.families.{f}.models\n" for f in FAMILIES)
        + "import raysys.models, raysys.families\n"
        "raysys.families.discover()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
