"""Presets (YAML shipped in the package) + dotted overrides -> a validated Config.

A preset and its overrides are read against every family's sections; the Config that comes
out holds only the sections (and fields) of the families the run uses
(:func:`raysys.config.schema.used_families`), so its ``--print-config``, MLflow params and
``config.yaml`` show nothing it does not use. An override of an unused family's key is
refused. Run names are computed before that pruning, so they are what they always were.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from raysys.config import renames
from raysys.config.schema import OPERATIONAL_KEYS, key_family, prune, root_schema, used_families
from raysys.errors import ConfigError, did_you_mean, one_of
from raysys.registry import choice_keys

PRESET_ROOT = resources.files("raysys.config") / "presets"  # shared baselines: <paper>/<leaf>.yaml
FAMILY_ROOT = resources.files("raysys.families")  # each paper's own: <family>/presets/<leaf>.yaml
# Keys a preset file may carry besides the schema's.
_PRESET_META = ("extends", "description")


@dataclass(frozen=True)
class PresetInfo:
    name: str  # "<paper>/<leaf>"
    paper: str
    description: str
    path: Path


def paper_folders() -> Dict[str, Path]:
    """Paper id -> the folder of its presets: a family's ``presets/`` or a shared one under raysys/config/presets."""
    folders = {p.name: p for p in sorted(Path(str(PRESET_ROOT)).iterdir()) if p.is_dir()}
    for path in sorted(Path(str(FAMILY_ROOT)).glob("*/presets")):
        folders[path.parent.name] = path
    return folders


def list_presets() -> List[PresetInfo]:
    """Every shipped preset, sorted by paper then name. Files starting with _ are bases."""
    out = []
    for paper, folder in sorted(paper_folders().items()):
        for path in sorted(folder.glob("*.yaml")):
            if path.name.startswith("_"):
                continue
            data = _read_yaml(path)
            out.append(PresetInfo(f"{paper}/{path.stem}", paper, str(data.get("description", "")), path))
    return out


def paper_titles() -> Dict[str, str]:
    """Paper id -> title, from each paper folder's _paper.yaml."""
    titles = {}
    for paper, folder in sorted(paper_folders().items()):
        if (folder / "_paper.yaml").is_file():
            titles[paper] = str(_read_yaml(folder / "_paper.yaml").get("title", paper))
    return titles


def _read_yaml(path: Path) -> Dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset file {path} is not valid YAML: {str(exc).splitlines()[0]}")
    if not isinstance(data, dict):
        raise ConfigError(f"preset file {path} must hold a mapping, not {type(data).__name__}")
    return data


def _preset_path(name: str) -> Path:
    paper, _, leaf = name.partition("/")
    folder = paper_folders().get(paper)
    path = folder / f"{leaf}.yaml" if folder is not None and leaf else Path("/nonexistent")
    if not path.is_file():
        known = [p.name for p in list_presets()]
        raise ConfigError(f"unknown preset: {one_of(name, known)}")
    return path


def _preset_layers(name: str, seen: Tuple[str, ...] = ()) -> List[Dict[str, Any]]:
    """The preset's YAML and its ``extends`` chain, base first."""
    if name in seen:
        raise ConfigError(f"preset {name!r} extends itself through {' -> '.join(seen)}")
    data = _read_yaml(_preset_path(name))
    layers = []
    base = data.get("extends")
    if base:
        layers = _preset_layers(str(base), seen + (name,))
    layers.append(renames.upgrade_tree({k: v for k, v in data.items() if k not in _PRESET_META}, f"preset {name!r}"))
    return layers


def schema_keys(node: Any = None, prefix: str = "") -> List[str]:
    """All dotted keys the schema knows (dict-typed fields count as one key)."""
    if node is None:
        node = OmegaConf.structured(root_schema())
    keys = []
    for key in node.keys():
        full = f"{prefix}{key}"
        child = node._get_node(key)
        keys.append(full)
        if isinstance(child, DictConfig) and child._metadata.object_type not in (None, dict):
            keys.extend(schema_keys(child, full + "."))
    return keys


def _check_key(cfg: DictConfig, dotted: str, known: Sequence[str]) -> None:
    """Refuse a key the schema does not have, with close matches."""
    node: Any = cfg
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, DictConfig):
            is_free_dict = node._metadata.object_type in (None, dict)
            if part not in node:
                if is_free_dict:
                    return
                raise ConfigError(f"unknown config key {dotted!r}{did_you_mean(dotted, known)}")
            node = node._get_node(part)
        else:
            prefix = ".".join(parts[:i])
            raise ConfigError(f"config key {prefix!r} is a value, it has no field {part!r}")


def _merge(cfg: DictConfig, update: Any, origin: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, update)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or "?"
        value = getattr(exc, "value", None)
        msg = str(exc).splitlines()[0]
        if "Key" in type(exc).__name__:
            known = schema_keys()
            raise ConfigError(f"unknown config key {key!r} in {origin}{did_you_mean(key, known)}")
        raise ConfigError(f"bad value {value!r} for {key!r} in {origin}: {msg}")


def parse_override(item: str) -> Tuple[str, Any]:
    """'a.b=value' -> ('a.b', parsed value). Values are read as YAML, as Hydra does."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must have the form key=value, e.g. train.epochs=2")
    key, raw = item.split("=", 1)
    key = key.strip().lstrip("+")
    if not key:
        raise ConfigError(f"override {item!r} has no key before '='")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _apply_overrides(cfg: DictConfig, overrides: Iterable[str]) -> DictConfig:
    known = schema_keys()
    for item in overrides:
        key, value = parse_override(item)
        key = renames.upgrade_key(key, f"override {item!r}")
        _check_key(cfg, key, known)
        update = OmegaConf.create()
        OmegaConf.update(update, key, value, force_add=True)
        cfg = _merge(cfg, update, f"override {item!r}")
    return cfg


def _validate_choices(cfg: DictConfig, shared: Optional[bool] = None) -> None:
    """Refuse a value no registry holds; ``shared``: only the shared keys (True) or only the families' (False)."""
    for key, registry in choice_keys().items():
        if shared is not None and (key_family(key) is None) != shared:
            continue
        value = OmegaConf.select(cfg, key)
        for item in value if isinstance(value, ListConfig) else [value]:
            if item is not None and item not in registry:
                raise ConfigError(f"bad value for {key!r}: {one_of(item, registry.all_names())}")


def _unused_family_error(key: str, family: str, tree: Dict[str, Any], origin: str) -> ConfigError:
    section = key.split(".", 1)[0]
    where = f"section {section!r}" if key_family(section) == family else f"key {key!r}"
    model = (tree.get("model") or {}).get("name")
    recipe = (tree.get("train") or {}).get("recipe")
    return ConfigError(f"config key {key!r} in {origin}: {where} belongs to family {family}, "
                       f"which this run's model {model!r} and recipe {recipe!r} do not use")


def check_used(cfg: DictConfig, set_keys: Sequence[Tuple[str, str]]) -> List[str]:
    """The families ``cfg`` uses; ConfigError if a key in ``set_keys`` ((dotted key, origin) pairs
    the user set, e.g. overrides) belongs to another family."""
    tree = OmegaConf.to_container(cfg)
    used = used_families(tree)
    for key, origin in set_keys:
        family = key_family(key)
        if family is not None and family not in used:
            raise _unused_family_error(key, family, tree, origin)
    return used


def only_used(cfg: DictConfig, used: Sequence[str]) -> DictConfig:
    """``cfg`` (a Config of every family) with only the sections and fields of the families ``used``."""
    return _merge(OmegaConf.structured(root_schema(used)), prune(OmegaConf.to_container(cfg), used), "config")


def load_config(preset: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved, validated Config of ``preset`` with ``overrides`` applied.

    It holds the sections of the families the run uses only; an override of a key of
    another family's section is refused (a preset's are dropped: an override may have
    switched to another family's model).
    """
    cfg = OmegaConf.structured(root_schema())  # every family's: the preset or an override may pick any
    known = schema_keys()
    for layer in _preset_layers(preset):
        for key in _flat_keys(layer):
            _check_key(cfg, key, known)
        cfg = _merge(cfg, layer, f"preset {preset!r}")
    cfg.preset = preset
    cfg.paper = preset.split("/", 1)[0]
    base = OmegaConf.to_container(cfg)
    cfg = _apply_overrides(cfg, overrides)
    _validate_choices(cfg, shared=True)  # the model, recipe, ... that decide which families the run uses
    used = check_used(cfg, [(renames.current_key(parse_override(item)[0]), f"override {item!r}") for item in overrides])
    _validate_choices(cfg, shared=False)
    if not cfg.run_name:  # of the whole Config: the names runs had before configs were pruned
        cfg.run_name = default_run_name(preset, base, OmegaConf.to_container(cfg))
    cfg = only_used(cfg, used)
    OmegaConf.set_readonly(cfg, False)
    return cfg


def _flat_keys(tree: Dict[str, Any], prefix: str = "") -> List[str]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            keys.extend(_flat_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def flatten(cfg: Any, prefix: str = "") -> Dict[str, Any]:
    """A nested config as {dotted.key: value}; lists stay values."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    out: Dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def science_diff(base: Dict[str, Any], cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The values that differ from the preset and change what a run computes."""
    flat_base, flat_cfg = flatten(base), flatten(cfg)
    ignored = OPERATIONAL_KEYS + ("seed",)
    return {
        key: value
        for key, value in sorted(flat_cfg.items())
        if not any(key == k or key.startswith(k + ".") for k in ignored) and flat_base.get(key) != value
    }


def default_run_name(preset: str, base: Dict[str, Any], cfg: Dict[str, Any]) -> str:
    """'<preset leaf>-seed<N>', plus a short hash of any science-relevant override.

    The same preset, seed and overrides always give the same name, which is
    what lets a re-run find and resume its checkpoint and MLflow run.
    """
    name = f"{preset.split('/')[-1]}-seed{cfg['seed']}"
    # Hashed under the keys' old names (raysys/config/renames.py): a rename keeps every run's name.
    diff = {renames.legacy_key(key): value for key, value in science_diff(base, cfg).items()}
    if diff:
        digest = hashlib.sha1(repr(sorted(diff.items())).encode()).hexdigest()[:8]
        name = f"{name}-{digest}"
    return name


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def from_container(data: Dict[str, Any]) -> DictConfig:
    """Rebuild a validated Config from a plain dict (e.g. out of a checkpoint or a ``config.yaml``).

    Like :func:`load_config`'s, it holds only the sections of the families the config uses;
    a config saved before configs were pruned (every family's sections) loads, its unused
    sections dropped.
    """
    if OmegaConf.is_config(data):
        data = OmegaConf.to_container(data)
    data = renames.upgrade_tree(data, origin=None)  # a config saved under renamed keys
    used = used_families(data)
    cfg = OmegaConf.structured(root_schema(used))
    return _merge(cfg, prune(data, used), "saved config")
