"""Registries complete on import: whichever raysys entry point a process imports first, it sees every family.

Each check runs in a fresh interpreter that imports only that entry point, uses it, and then
checks what any process must see (every family's config sections, models, recipes, translators).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESNET20 = "cifar-resnet/fashion-mnist-resnet20"

# What every process sees, run after the entry point's own check (so that entry point was imported first).
EVERY_FAMILY = f"""
from raysys.config import load_config
from raysys.errors import ConfigError
from raysys.legacy import TRANSLATORS
from raysys.models import MODELS
from raysys.train.recipes import RECIPES
from raysys.eval.evaluators import EVALUATORS
assert load_config("stir/emoji").stir.evaluation == 2
try:
    load_config("{RESNET20}", ["model.name=no_such_model"])
    raise SystemExit("model.name=no_such_model was accepted")
except ConfigError as err:
    assert "'model.name'" in str(err), err
for name, family in [("flexnet", "flexconv"), ("MIMONet-28", "mimoconv"), ("resnet50_lpf4", "antialiased"),
                     ("stir_standard", "stir"), ("cifar_resnet20", None)]:
    assert MODELS.family(name) == family, (name, MODELS.family(name))
assert {{n: RECIPES.family(n) for n in RECIPES.names()}} == {{
    "default": None, "flexconv": "flexconv", "mimo": "mimoconv", "stir": "stir", "antialiased": "antialiased",
    "antialiased-finetune": "antialiased", "antialiased-resume": "antialiased"}}
assert TRANSLATORS.names() == ["main.py", "run_crossres.py", "run_experiment.py", "train.py",
                               "train_superposition.py", "validate_dynamic.py"], TRANSLATORS.names()
assert EVALUATORS.family("dynamic") == "mimoconv" and "shift-consistency" in EVALUATORS
print("ok")
"""

ENTRY_POINTS = {
    "config loader": """
        from raysys.config import load_config
        cfg = load_config("stir/emoji", ["stir.evaluation=3"])
        assert cfg.stir.evaluation == 3 and cfg.model.name == "stir_standard"
    """,
    "config schema": """
        from raysys.config.schema import root_schema, section_names
        assert {"flexconv", "cross_res", "mimo", "superposition", "mimo_recipe",
                "antialias", "stir"} <= set(section_names()), section_names()
        assert "stir" in {f.name for f in __import__("dataclasses").fields(root_schema())}
    """,
    "model registry": """
        from raysys.models import MODELS
        assert "flexnet" in MODELS and "MIMONet-28" in MODELS and "stir_pixel_pool" in MODELS
    """,
    "recipe registry": """
        from raysys.train.recipes import RECIPES
        assert RECIPES.names() == ["antialiased", "antialiased-finetune", "antialiased-resume", "default", "flexconv",
                                   "mimo", "stir"], RECIPES.names()
    """,
    "choice keys": """
        from raysys.registry import choice_keys
        keys = choice_keys()
        assert {"model.name", "train.recipe", "antialias.pad_type", "flexconv.kernel.type", "superposition.binding",
                "evaluate.metrics"} <= set(keys), sorted(keys)
    """,
    "legacy translators": """
        from raysys.legacy import translate
        argv = "python scripts/train.py --dataset emoji --model standard --evaluation 2 --kernel-size 7 --interpolation bicubic --lr 0.001 --seed 0"
        assert translate(argv.split()).preset == "stir/emoji"
    """,
    "evaluators": """
        from raysys.eval.evaluators import EVALUATORS
        assert "dynamic" in EVALUATORS
    """,
    "cli": f"""
        import contextlib, io
        from raysys.cli.main import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["train", "stir/emoji", "--print-config"]) == 0
        assert "evaluation: 2" in out.getvalue()
        with contextlib.redirect_stderr(io.StringIO()) as err:
            assert main(["train", "{RESNET20}", "model.name=no_such_model", "--print-config"]) != 0
        assert "model.name" in err.getvalue()
    """,
    # What a fresh Ray Train worker does first: rebuild the run's Config from the loop config.
    "worker (from_container)": """
        from raysys.config.loader import from_container
        cfg = from_container({"model": {"name": "flexnet"}, "train": {"recipe": "flexconv", "mask_params_lr_factor": 0.1},
                              "flexconv": {"net": {"no_blocks": 3}}})
        assert cfg.flexconv.net.no_blocks == 3 and cfg.train.mask_params_lr_factor == 0.1 and "cross_res" in cfg
        old = from_container({"model": {"name": "flexnet"}, "net": {"no_blocks": 3}})  # saved under the old names
        assert old.flexconv.net.no_blocks == 3 and "net" not in old
    """,
}


def run_fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_fresh_process_sees_every_family_from_any_entry_point(entry):
    out = run_fresh(textwrap.dedent(ENTRY_POINTS[entry]) + EVERY_FAMILY)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_no_module_imports_a_catalog():
    needle = "raysys." + "catalog"
    hits = [f"{path.relative_to(ROOT)}:{n}" for folder in ("raysys", "pipelines", "tests")
            for path in sorted((ROOT / folder).rglob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert hits == []
    assert not (ROOT / "raysys" / "catalog.py").exists()


def test_a_fifth_family_is_a_folder(tmp_path):
    """A new folder under raysys/families is discovered; a lookup during its import does not recurse."""
    family = tmp_path / "fifth"
    family.mkdir()
    (family / "__init__.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from raysys.config.schema import config_section
        from raysys.models import MODELS, register_model

        assert "flexnet" in MODELS or True  # a lookup while discovery imports this module: no recursion

        @config_section("fifth")
        @dataclass
        class FifthConfig:
            width: int = 3

        @register_model("fifth_net")
        def build(cfg, spec):
            raise NotImplementedError
    '''))
    code = textwrap.dedent(f"""
        import raysys.families as families
        families.__path__.append({str(tmp_path)!r})
        from raysys.config import load_config
        from raysys.models import MODELS
        assert families.names() == ["antialiased", "fifth", "flexconv", "mimoconv", "stir"], families.names()
        assert MODELS.family("fifth_net") == "fifth"
        assert "fifth" not in load_config("{RESNET20}")
        assert load_config("{RESNET20}", ["model.name=fifth_net", "fifth.width=5"]).fifth.width == 5
        families.discover()  # idempotent
        print("ok")
    """)
    out = run_fresh(code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_ownership_follows_the_registering_module():
    from raysys import families
    from raysys.models import MODELS

    assert families.family_of("raysys.families.mimoconv.models.network") == "mimoconv"  # a module of a subpackage in the folder
    assert families.family_of("raysys.families.stir.anything") == "stir"  # a module in the folder
    assert families.family_of("raysys.models.cifar_resnet") is None
    # torchvision's own architectures are shared models (raysys/models/torchvision_models.py), their _lpf forms the family's
    assert MODELS.family("resnet18") is None and MODELS.family("resnet18_lpf4") == "antialiased"
