"""Layering: every import goes down the layer order, never up; leaves import no other leaf.

The order is defined here, once (docs/architecture.md explains it). Every module under
``raysys/`` and ``pipelines/`` is read with the AST; its imports at any depth (function-level
ones included) must name modules of its own layer or of a lower one. A function-level import
is either listed in :data:`LAZY` with the reason it waits for the call, or moved to the top; none
may hide an import cycle (moved to the top, it would close one). Models, layers and metrics
import no Ray or MLflow, checked in a fresh interpreter.
"""
from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

from tests.conftest import REPO

# Lowest first. A pattern ``a.b`` names that module; ``a.b.**`` names it and every module below;
# ``*`` is one name. A module's layer is its most specific pattern's (more names win; at a tie,
# the exact pattern). Leaves (``isolated``) import only lower layers and their own package.
LAYERS: Tuple[Tuple[str, bool, Tuple[str, ...]], ...] = (
    # errors, the one Registry class, family discovery (standard library only)
    ("foundation", False, ("raysys", "raysys.errors", "raysys.registry", "raysys.families")),
    # the typed sections, presets, overrides
    ("config", False, ("raysys.config.**",)),
    # torch models, data formats and streams, metrics, MLflow, translators' registry, terminal output
    ("leaves", True, ("raysys.models.**", "raysys.data.**", "raysys.eval.**", "raysys.track.**",
                      "raysys.legacy.**", "raysys.console.**")),
    # the generic worker loop, recipes' base, optimizers and schedules, checkpoints, Ray sessions
    ("train", False, ("raysys.train.**",)),
    # one paper each: config sections, layers and models (leaves themselves: FAMILY_LEAVES), and
    # what plugs them into the loop and the commands (recipe, schedules, evaluators, translators)
    ("families", False, ("raysys.families.*.**",)),
    # train, eval and each sweep trial: checks before Ray, the MLflow run, trained-run resolution
    ("driver", False, ("raysys.driver.**",)),
    ("tune", False, ("raysys.tune.**",)),
    # data preparation, STIR generators, the report engine
    ("pipelines", False, ("pipelines.**",)),
    ("bench", False, ("raysys.bench.**",)),
    # what a user runs: `python -m raysys`, the demo
    ("entry points", False, ("raysys.cli.**", "raysys.__main__", "pipelines.demo")),
)
# A family's layers and models are leaves too: what they import, directly or through their own
# family's modules (function-level imports included), lies in the layers below ``train``.
FAMILY_LEAVES = ("raysys.families.*.layers.**", "raysys.families.*.models.**")
ROOTS = ("raysys", "pipelines")

# Function-level imports, by (importer pattern, imported pattern): why each waits for the call.
# Everything else is imported at the top of its module.
LAZY: Dict[Tuple[str, str], str] = {
    ("raysys.cli.**", "**"): "a command imports what it runs when it runs: `python -m raysys --help` stays fast",
    ("raysys.bench.**", "**"): "a benchmark imports what it measures when it runs: listing them (`raysys bench`) stays fast",
    ("pipelines.**", "**"): "a pipeline step imports its machinery when it runs: the report definitions and "
                            "generators register without it (and without optional packages: PIL, cairosvg, matplotlib)",
    ("**", "ray.**"): "Ray takes seconds to import: models, config checks and the driver's preflight run without it",
    ("**", "mlflow.**"): "MLflow takes seconds to import, and workers never log to it",
    ("**", "torchvision.**"): "importing torchvision takes seconds (it loads torch._dynamo); only its models and JPEG decoding need it",
    ("**", "tqdm.**"): "tqdm draws only on a terminal that shows progress",
    ("**", "PIL.**"): "Pillow serves only JPEG draft decoding (data.jpeg_draft) and the STIR sources' images",
    ("raysys.driver.launch", "raysys.data.stream"): "data.stream imports Ray Data: the checks before Ray "
                                                    "(and `sweep --dry-run`) import launch without it",
    ("raysys.tune.sweep", "raysys.driver.training"): "the training driver imports Ray Data (data.stream): "
                                                     "planning a sweep (`--dry-run`) does not need it",
    ("raysys.tune.pack", "raysys.driver.pack"): "the pack driver imports Ray Data (data.stream): "
                                                "planning a sweep (`--dry-run`) does not need it",
}


class Import(NamedTuple):
    module: str  # the importing module
    target: str  # the imported module (a module file where the name is one)
    line: int
    local: bool  # inside a function


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=None)
def module_files() -> Dict[str, Path]:
    return {module_name(p): p for root in ROOTS for p in sorted((REPO / root).rglob("*.py"))}


def _target(module: str, name: Optional[str]) -> str:
    """``from module import name``: the submodule ``module.name`` if it is one, else ``module``."""
    return f"{module}.{name}" if name and f"{module}.{name}" in module_files() else module


def imports(module: str) -> Iterator[Import]:
    """Every import of ``module``, at any depth; relative ones resolved, ``if TYPE_CHECKING:`` skipped."""
    path = module_files()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, local: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, child.lineno, inner)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([child.module] if child.module else []))
                for alias in child.names:
                    yield Import(module, _target(base, alias.name), child.lineno, inner)
            yield from visit(child, inner)

    yield from visit(ast.parse(path.read_text(), str(path)), False)


def _matches(pattern: str, module: str) -> Optional[Tuple[int, int]]:
    """How specifically ``pattern`` names ``module`` (names, exactness), or None."""
    if pattern == "**":
        return (0, 0)
    names, deep = (pattern[:-3], True) if pattern.endswith(".**") else (pattern, False)
    want, parts = names.split("."), module.split(".")
    if len(parts) < len(want) or (not deep and len(parts) != len(want)):
        return None
    if all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, want)):
        return (len(want), 0 if deep else 1)
    return None


@lru_cache(maxsize=None)
def layer_of(module: str) -> Tuple[int, str]:
    """(index in LAYERS, the matching pattern) of ``module``."""
    best = None
    for index, (_, _, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            score = _matches(pattern, module)
            if score and (best is None or score > best[0]):
                best = (score, index, pattern)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best[1], best[2]


def own(module: str) -> bool:
    return module.split(".")[0] in ROOTS


def lazy_reason(item: Import) -> Optional[str]:
    for (importer, imported), reason in LAZY.items():
        if _matches(importer, item.module) and _matches(imported, item.target):
            return reason
    return None


@lru_cache(maxsize=None)
def all_imports() -> Tuple[Import, ...]:
    return tuple(item for module in module_files() for item in imports(module))


def test_every_module_has_a_layer():
    for module in module_files():
        layer_of(module)


def against_the_order(items) -> List[str]:
    """The imports of ``items`` that go up the layer order, or from one leaf to another."""
    wrong = []
    for item in items:
        if not own(item.target) or item.target not in module_files():
            continue
        (low, pattern), (high, _) = layer_of(item.target), layer_of(item.module)
        where = f"{module_files()[item.module].relative_to(REPO)}:{item.line} imports {item.target}"
        if low > high:
            wrong.append(f"{where}: layer {LAYERS[low][0]!r} is above {LAYERS[high][0]!r}")
        elif low == high and LAYERS[low][1] and layer_of(item.module)[1] != pattern:
            wrong.append(f"{where}: the leaves {layer_of(item.module)[1]} and {pattern} import nothing of each other")
    return wrong


def test_no_import_goes_up_and_leaves_import_no_other_leaf():
    wrong = against_the_order(all_imports())
    assert not wrong, "imports against the layer order (move the code to the right layer):\n" + "\n".join(wrong)


def test_every_function_level_import_has_a_reason():
    unexplained = [f"{module_files()[i.module].relative_to(REPO)}:{i.line} imports {i.target}"
                   for i in all_imports() if i.local and lazy_reason(i) is None]
    assert not unexplained, ("function-level imports without a reason: move them to the top of the module, or add "
                             "(importer, imported) and why to LAZY:\n" + "\n".join(unexplained))


def test_every_reason_is_still_used():
    used = {key for i in all_imports() if i.local for key in LAZY
            if _matches(key[0], i.module) and _matches(key[1], i.target)}
    assert set(LAZY) - used == set(), f"LAZY entries no import needs: {sorted(set(LAZY) - used)}"


def test_a_familys_layers_and_models_are_leaves():
    """What a family's layers and models reach through its own modules stays below ``train``."""
    train = next(i for i, (name, _, _) in enumerate(LAYERS) if name == "train")
    edges: Dict[str, List[Import]] = {}
    for item in all_imports():
        if own(item.target) and item.target in module_files():
            edges.setdefault(item.module, []).append(item)
    wrong = []
    for start in (m for m in module_files() if any(_matches(p, m) for p in FAMILY_LEAVES)):
        family = ".".join(start.split(".")[:3])
        seen, stack = {start}, [[start]]
        while stack:
            path = stack.pop()
            for item in edges.get(path[-1], []):
                if layer_of(item.target)[0] >= train and not item.target.startswith(family + "."):
                    wrong.append(f"{start} reaches {item.target} ({LAYERS[layer_of(item.target)[0]][0]}): "
                                 f"{' -> '.join(path + [item.target])} "
                                 f"({module_files()[item.module].relative_to(REPO)}:{item.line})")
                elif item.target.startswith(family + ".") and item.target not in seen:
                    seen.add(item.target)
                    stack.append(path + [item.target])
    assert not wrong, "a family's layers and models import only the layers below train:\n" + "\n".join(sorted(set(wrong)))


def _top_level_graph(items) -> Dict[str, Set[str]]:
    """Module -> the modules importing it runs at once: its top-level imports and their packages."""
    graph: Dict[str, Set[str]] = {m: set() for m in module_files()}
    for item in items:
        if item.local or item.target not in module_files():
            continue
        graph[item.module].add(item.target)
        graph[item.module].update(_packages(item.target) - _packages(item.module) - {item.module})
    return graph


def _packages(module: str) -> Set[str]:
    parts = module.split(".")
    return {".".join(parts[:end]) for end in range(1, len(parts)) if ".".join(parts[:end]) in module_files()}


def _path(graph: Dict[str, Set[str]], start: str, goal: str) -> Optional[List[str]]:
    seen, stack = set(), [[start]]
    while stack:
        path = stack.pop()
        if path[-1] == goal:
            return path
        if path[-1] not in seen:
            seen.add(path[-1])
            stack.extend(path + [nxt] for nxt in sorted(graph.get(path[-1], ())))
    return None


def hidden_cycles(items) -> List[str]:
    """The function-level imports of ``items`` that would close an import cycle at the top level."""
    graph = _top_level_graph(items)
    hidden = []
    for item in items:
        if item.local and item.target in module_files() and item.target not in _packages(item.module):
            path = _path(graph, item.target, item.module)
            if path:
                hidden.append(f"{module_files()[item.module].relative_to(REPO)}:{item.line} imports {item.target}, "
                              f"which imports it back: {' -> '.join(path)}")
    return hidden


def test_no_function_level_import_hides_a_cycle():
    """Moved to the top, no function-level import would close an import cycle (a module importing
    its own package is not one: the package always starts first)."""
    hidden = hidden_cycles(all_imports())
    assert not hidden, "function-level imports that hide a cycle (move the shared code down a layer):\n" + "\n".join(hidden)


# Usable from plain Python: the shared models and metrics, each family's layers and models.
PURE = ("raysys.models.**", "raysys.eval.**", "raysys.families.*.layers.**", "raysys.families.*.models.**")


def pure_modules() -> List[str]:
    return [m for m in module_files() if any(_matches(p, m) for p in PURE)]


def test_the_pure_modules_are_found():
    modules = pure_modules()
    for family in ("antialiased", "flexconv", "mimoconv", "stir"):
        assert any(m.startswith(f"raysys.families.{family}.models") for m in modules), family
    assert "raysys.eval.evaluators" in modules and "raysys.models.registry" in modules
    assert "raysys.families.flexconv.layers.ckconv" in modules


def test_models_layers_and_metrics_import_no_ray_or_mlflow():
    """In a fresh interpreter, importing each of them (and discovering every family) loads neither."""
    code = (
        "import importlib, sys\n"
        f"for name in {pure_modules()!r} + ['raysys.families']:\n"
        "    importlib.import_module(name)\n"
        "    if name == 'raysys.families':\n"
        "        sys.modules[name].discover()\n"
        "    heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow'))\n"
        "    if heavy:\n"
        "        print(name, 'loads', heavy[:3]); break\n"
        "else:\n"
        "    print('clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "clean", out.stdout


def test_the_checks_catch_what_they_claim():
    """An upward import, a leaf importing another leaf, and a cycle hidden in a function are found."""
    up = Import("raysys.eval.evaluators", "raysys.driver.evaluation", 1, True)
    sideways = Import("raysys.eval.evaluators", "raysys.data.jpeg", 1, False)
    down = Import("raysys.driver.evaluation", "raysys.eval.evaluators", 1, False)
    assert len(against_the_order([up, sideways, down])) == 2
    # data.shards imports data.formats.base, so the formats package (and its STIR reader) first
    hidden = Import("raysys.data.formats.stir_npz", "raysys.data.shards", 1, True)
    found = [h for h in hidden_cycles((*all_imports(), hidden)) if h.startswith("raysys/data/formats/stir_npz.py")]
    assert found and "raysys.data.shards -> raysys.data.formats" in found[0]
    assert layer_of("raysys.eval.evaluators")[0] < layer_of("raysys.driver.evaluation")[0]
    assert layer_of("raysys.families.stir.recipe")[0] > layer_of("raysys.train.loop")[0]
    assert layer_of("raysys.families.stir")[0] == layer_of("raysys.families.stir.layers.sesn")[0]
    assert layer_of("raysys.families")[0] == 0 and layer_of("raysys.__main__")[0] == len(LAYERS) - 1
    assert layer_of("pipelines.demo")[0] == layer_of("raysys.cli.main")[0] > layer_of("pipelines.prepare")[0]
    assert _matches("raysys.families.*.models.**", "raysys.families.mimoconv.models.network")
    assert _matches("raysys.families.*.models.**", "raysys.families.stir.models")
    assert not _matches("raysys.families.*.models.**", "raysys.families.stir.recipe")
    assert lazy_reason(Import("raysys.train.session", "ray.train", 1, True))
    assert lazy_reason(Import("raysys.train.session", "raysys.track.uri", 1, True)) is None
