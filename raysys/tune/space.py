"""Tune spaces: one YAML per paper table or figure, expanded into trials.

A space names rows (presets, each with optional overrides and a label), a grid
of overrides crossed with every row, optional random choices, the seeds, the
concurrency and the report it feeds. See docs/sweeps.md for the format.

Random choices are drawn here, once, from ``random_seed``: a re-run of the
same space names the same trials, which is what makes sweeps idempotent.
"""
from __future__ import annotations

import copy
import itertools
import math
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml
from omegaconf import DictConfig

from raysys.config.loader import load_config, parse_override
from raysys.errors import ConfigError, did_you_mean
from raysys.train.preflight import check_values

SPACE_FIELDS = (
    "name", "description", "report", "experiment", "presets", "preset", "overrides",
    "grid", "random", "num_samples", "random_seed", "seeds", "max_concurrent", "seeds_per_trial",
)


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep: a row's preset and overrides at one seed."""

    label: str
    preset: str
    overrides: tuple
    seed: int

    def argv(self) -> List[str]:
        return [*self.overrides, f"seed={self.seed}"]


@dataclass
class Row:
    label: str
    preset: str
    overrides: List[str] = field(default_factory=list)
    # The row's Config at the space's first seed, kept from load_space's check: other seeds derive from it.
    config: Optional[DictConfig] = field(default=None, repr=False, compare=False)


@dataclass
class Space:
    name: str
    rows: List[Row]
    seeds: List[int]
    report: str = ""
    experiment: str = ""
    description: str = ""
    max_concurrent: int = 0
    # Seeds of one row trained one after another in one Tune trial (one Ray Train worker group): raysys/tune/pack.py.
    seeds_per_trial: int = 1
    source: Dict[str, Any] = field(default_factory=dict)

    def trials(self) -> List[Trial]:
        return [Trial(r.label, r.preset, tuple(r.overrides), s) for r in self.rows for s in self.seeds]

    def experiment_name(self) -> str:
        """The MLflow experiment of the sweep and its trials: given, or the first preset's paper."""
        return self.experiment or load_config(self.rows[0].preset).paper


def reseeded(cfg: DictConfig, seed: int) -> DictConfig:
    """A copy of ``cfg`` at ``seed``: the Config that loading it with ``seed=<seed>`` gives, without reloading.

    The seed changes nothing but ``seed`` and the seed part of a generated run
    name ('<preset leaf>-seed<N>[-<hash>]': the hash covers the science-relevant
    overrides, never the seed). An explicitly given run name stays.
    """
    out = copy.deepcopy(cfg)
    out.seed = seed
    leaf = re.escape(str(cfg.preset).split("/")[-1])
    generated = re.fullmatch(rf"({leaf}-seed){cfg.seed}(-[0-9a-f]{{8}})?", str(cfg.run_name))
    if generated:
        out.run_name = f"{generated.group(1)}{seed}{generated.group(2) or ''}"
    return out


def row_slug(label: str) -> str:
    """A row label as a run-name part: 'ResNet-32 lr=0.1 #0' -> 'ResNet-32-lr0.1-0'."""
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", label.replace("=", "")).strip("-")
    return slug or "row"


def _generated_with_overrides(prefix: str, run_name: str) -> bool:
    """Whether ``run_name`` is '<prefix>-seed<N>-<hash>': a generated name whose overrides change the run."""
    return re.fullmatch(rf"{re.escape(prefix)}-seed-?\d+-[0-9a-f]{{8}}", run_name) is not None


def labelled_run_name(label: str, preset: str, run_name: str) -> str:
    """A trial's run name, saying its row: '<row label>-seed<N>-<hash>' for a row that changes its preset.

    Only a generated name whose overrides change what the run computes ('<preset leaf>-seed<N>-<hash>')
    changes: its preset leaf becomes the row's label. A row that trains its preset as it is keeps the
    preset's name (the run ``raysys train <preset>`` makes), and an explicit ``run_name`` stays.
    Runs recorded before rows named their runs carry :func:`unlabelled_run_name`; the sweep and the
    reports still find them by it.
    """
    leaf = preset.split("/")[-1]
    return row_slug(label) + run_name[len(leaf):] if _generated_with_overrides(leaf, run_name) else run_name


def unlabelled_run_name(label: str, preset: str, run_name: str) -> str:
    """The name a trial's run had before run names said the row (the inverse of :func:`labelled_run_name`)."""
    slug = row_slug(label)
    return preset.split("/")[-1] + run_name[len(slug):] if _generated_with_overrides(slug, run_name) else run_name


def _seeds(value: Any) -> List[int]:
    """A list, ``{range: [start, stop]}`` (stop exclusive) or "a-b" (inclusive)."""
    if isinstance(value, int):
        return [value]
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return list(value)
    if isinstance(value, dict) and set(value) == {"range"} and len(value["range"]) == 2:
        return list(range(int(value["range"][0]), int(value["range"][1])))
    if isinstance(value, str) and "-" in value:
        start, stop = value.split("-", 1)
        if start.strip().isdigit() and stop.strip().isdigit():
            return list(range(int(start), int(stop) + 1))
    raise ConfigError(f"space field 'seeds': {value!r} is not a list of ints, {{range: [a, b]}} or 'a-b'")


def _override_text(key: str, value: Any) -> str:
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


RANDOM_KINDS = ("choice", "uniform", "loguniform", "randint")
MAX_CONCURRENT_MEANING = "0 = as many trials as the cluster holds"
SEEDS_PER_TRIAL_MEANING = "the seeds of one row that one Tune trial trains one after another; 1 = one seed per trial"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_random(spec: Any, key: str) -> None:
    """ConfigError, in one line, for a random spec that cannot be sampled (before anything is drawn)."""
    where = f"space random.{key}"
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: an empty list; give the values to choose from")
        return
    if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in RANDOM_KINDS):
        raise ConfigError(f"{where}: {spec!r} is not a list or one of {'/'.join(RANDOM_KINDS)}, e.g. {{loguniform: [1e-4, 1e-1]}}")
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}: choice needs a non-empty list of values, got {args!r}")
        return
    pair = isinstance(args, list) and len(args) == 2 and all(_is_number(a) for a in args)
    if kind == "uniform" and not (pair and args[0] < args[1]):
        raise ConfigError(f"{where}: uniform needs [low, high], two numbers with low < high, got {args!r}")
    if kind == "loguniform" and not (pair and 0 < args[0] < args[1]):
        raise ConfigError(f"{where}: loguniform needs [low, high], two numbers with 0 < low < high, got {args!r}")
    if kind == "randint" and not (pair and all(isinstance(a, int) for a in args) and args[0] < args[1]):
        raise ConfigError(f"{where}: randint needs [low, high], two integers with low < high (high excluded), got {args!r}")


def _sample(spec: Any, key: str, rng: random.Random) -> Any:
    _check_random(spec, key)
    if isinstance(spec, list):
        return rng.choice(spec)
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        return rng.choice(list(args))
    if kind == "uniform":
        return rng.uniform(float(args[0]), float(args[1]))
    if kind == "loguniform":
        return math.exp(rng.uniform(math.log(float(args[0])), math.log(float(args[1]))))
    return rng.randrange(int(args[0]), int(args[1]))


def _int_field(data: Dict[str, Any], name: str, default: int, minimum: int, meaning: str = "") -> int:
    """A whole-number space field, refused in one line when it is not one or below ``minimum``."""
    value = data.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"space field {name!r}: {value!r} (must be an integer >= {minimum}{'; ' + meaning if meaning else ''})")
    return value


def check_max_concurrent(value: Any) -> int:
    """``max_concurrent``, a whole number >= 0 (0 = as many trials as the cluster holds); ConfigError otherwise.

    load_space checks the space's field (and ``max_concurrent=...`` on the command
    line); callers passing their own value to run_sweep check it with this.
    """
    return _int_field({"max_concurrent": value}, "max_concurrent", 0, 0, MAX_CONCURRENT_MEANING)


def _rows(data: Dict[str, Any]) -> List[Row]:
    if "presets" in data and "preset" in data:
        raise ConfigError("space: give either 'presets' (a list of rows) or 'preset', not both")
    entries = data.get("presets")
    if entries is None:
        if not data.get("preset"):
            raise ConfigError("space names no preset: give 'presets: [...]' or 'preset: <name>'")
        entries = [data["preset"]]
    if not isinstance(entries, list) or not entries:
        raise ConfigError("space field 'presets' must be a non-empty list")
    rows = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"preset": entry}
        if not isinstance(entry, dict) or "preset" not in entry:
            raise ConfigError(f"space row {entry!r} must be a preset name or a mapping with 'preset'")
        unknown = set(entry) - {"preset", "overrides", "label"}
        if unknown:
            raise ConfigError(f"space row {entry['preset']!r}: unknown field {sorted(unknown)[0]!r} (allowed: preset, overrides, label)")
        overrides = [str(o) for o in entry.get("overrides", [])]
        rows.append(Row(str(entry.get("label") or entry["preset"].split("/")[-1]), str(entry["preset"]), overrides))
    return rows


def _expand(data: Dict[str, Any]) -> List[Row]:
    base_rows = _rows(data)
    fixed = [str(o) for o in data.get("overrides", [])]
    grid = data.get("grid") or {}
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise ConfigError("space field 'grid' must map keys to non-empty lists of values")
    randoms = data.get("random") or {}
    if not isinstance(randoms, dict):
        raise ConfigError("space field 'random' must map keys to random specs, e.g. {train.lr: {loguniform: [1e-4, 1e-1]}}")
    for key, spec in sorted(randoms.items()):
        _check_random(spec, key)
    samples = _int_field(data, "num_samples", 1, 1) if randoms else 1
    rng = random.Random(_int_field(data, "random_seed", 0, -2**63))
    rows = []
    points = list(itertools.product(*[[(k, v) for v in values] for k, values in grid.items()])) or [()]
    for row in base_rows:
        for point in points:
            for sample in range(samples):
                drawn = [(k, _sample(spec, k, rng)) for k, spec in sorted(randoms.items())]
                extra = [_override_text(k, v) for k, v in [*point, *drawn]]
                label = row.label
                if point or drawn:
                    label += " " + " ".join(f"{k.split('.')[-1]}={v}" for k, v in [*point, *drawn])
                if randoms and samples > 1:
                    label += f" #{sample}"
                rows.append(Row(label, row.preset, [*fixed, *row.overrides, *extra]))
    return rows


def apply_space_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """``field=value`` replaces a space field; a config key (``train.epochs=1``) joins every trial's overrides."""
    data = dict(data)
    for item in overrides:
        key, value = parse_override(item)
        if key in SPACE_FIELDS:
            data[key] = value
        elif "." in key:
            data["overrides"] = [*data.get("overrides", []), item]
        else:
            raise ConfigError(f"unknown space field {key!r}{did_you_mean(key, SPACE_FIELDS)} (config keys need a dot, e.g. train.epochs=1)")
    return data


SPACES_ENV = "RAYSYS_TUNE_SPACES"


def space_dirs() -> List[Path]:
    """Where a tune space given by name (no folder) is looked for, in this order.

    ``$RAYSYS_TUNE_SPACES`` (folders separated by ``os.pathsep``), ``./tune_spaces``, and the
    ``tune_spaces`` folder beside the installed ``raysys`` package (a checkout or an editable install).
    """
    configured = [Path(p) for p in os.environ.get(SPACES_ENV, "").split(os.pathsep) if p]
    return [*configured, Path.cwd() / "tune_spaces", Path(__file__).resolve().parents[2] / "tune_spaces"]


def find_space(name: str | Path) -> Path:
    """The tune space file ``name`` names: a path, or a name looked up in :func:`space_dirs`."""
    path = Path(name)
    if path.is_file():
        return path
    if path.parent == Path("."):
        leaf = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
        for folder in space_dirs():
            if (folder / leaf).is_file():
                return folder / leaf
        folders = ", ".join(str(f) for f in dict.fromkeys(space_dirs()))
        raise ConfigError(f"tune space {name} does not exist (looked in {folders}; set {SPACES_ENV} to add folders)")
    raise ConfigError(f"tune space {path} does not exist")


def load_space(path: str | Path, overrides: Sequence[str] = (), *, check_trials: bool = True) -> Space:
    """Read, override and validate a space; every trial's config is checked now, before any trial starts.

    ``check_trials=False`` skips loading each row's Config (a full preset load
    per row): for readers that need only the space's fields, rows and seeds.
    """
    path = find_space(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"tune space {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"tune space {path} must hold a mapping")
    unknown = sorted(set(data) - set(SPACE_FIELDS))
    if unknown:
        raise ConfigError(f"tune space {path}: unknown field {unknown[0]!r}{did_you_mean(unknown[0], SPACE_FIELDS)}")
    data = apply_space_overrides(data, overrides)
    space = Space(
        name=str(data.get("name") or path.stem), rows=_expand(data), seeds=_seeds(data.get("seeds", [0])),
        report=str(data.get("report", "")), experiment=str(data.get("experiment", "")),
        description=str(data.get("description", "")), max_concurrent=check_max_concurrent(data.get("max_concurrent", 0)),
        seeds_per_trial=_int_field(data, "seeds_per_trial", 1, 1, SEEDS_PER_TRIAL_MEANING), source=data,
    )
    if not space.seeds:
        raise ConfigError(f"tune space {path}: 'seeds' is empty")
    labels = [row.label for row in space.rows]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"tune space {path}: two rows share the label {duplicates[0]!r}; give them distinct labels")
    if check_trials:
        # The checks `raysys train` makes before Ray starts, for every row, before any trial starts.
        for row in space.rows:
            try:
                row.config = load_config(row.preset, [*row.overrides, f"seed={space.seeds[0]}"])
                check_values(row.config)
            except ConfigError as exc:
                raise ConfigError(f"tune space {path}, row {row.label!r}: {exc}") from None
    return space
