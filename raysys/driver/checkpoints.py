"""Trained models from what a user names: an MLflow run id, a run name or a checkpoint path.

``python -m raysys eval <run id | run name | checkpoint> key=value ...`` (and ``raysys stir
analyze``) take the model and its config from the run's checkpoint, so nothing about the
architecture has to be repeated. Overrides may change how and on what the model is evaluated
(``evaluate.*``, the test data, batch sizes, workers, and the keys families declare with
:func:`raysys.eval.overrides.allow_eval_override`, e.g. ``superposition.sup_low``); any other
key must equal the trained value, as the original scripts required the model flags to match
the weights.

``raysys export-weights <preset> (--checkpoint PATH | --run RUN) --out FILE [--format raysys|original]``
writes a checkpoint's weights: raysys's ``{'state_dict', 'arch'}``, or the layout the family's
original code loads strictly (:data:`raysys.models.weights.ORIGINAL_FORMATS`, docs/weights.md).
``--run`` is an MLflow run id, or a run name in the preset's experiment; its checkpoint is the
newest in the folder its ``raysys.checkpoint_dir`` tag names (the best by
``checkpoint.score_attribute`` where the preset keeps the best), else its
``checkpoint/state.pt`` artifact. A weights file is read for a model by its family's reader
(:data:`raysys.models.weights.WEIGHTS_READERS`: the original's layout, the family's checks), as
``raysys eval --weights`` reads it.
"""
from __future__ import annotations

import importlib
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from omegaconf import OmegaConf

from raysys import families
from raysys.config.loader import from_container, parse_override
from raysys.driver.record import CHECKPOINT_DIR_TAG
from raysys.driver.repair import latest_checkpoint_file
from raysys.errors import CheckpointError, ConfigError, one_of
from raysys.eval.overrides import eval_override_allowed, eval_override_keys
from raysys.models.registry import MODELS, create_model, model_kwargs
from raysys.models.weights import ORIGINAL_FORMATS, WEIGHTS_READERS, load_state, read_weights, save_weights
from raysys.track import runs
from raysys.track.uri import redact, resolve_tracking_uri
from raysys.train import checkpoint as ckpt
from raysys.train.inputs import input_spec

CHECKPOINT_ARTIFACT = "checkpoint/state.pt"


@dataclass
class TrainedModel:
    cfg: Any  # the run's config with the evaluation overrides applied
    state: Dict[str, Any]  # the model's state_dict
    run_id: str  # the MLflow run to log into ("" if none was found)
    epoch: int
    source: str


def apply_eval_overrides(cfg, overrides: Sequence[str]):
    """``cfg`` with ``overrides``; a key fixed by the checkpoint may only be restated."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    for item in overrides:
        key, value = parse_override(item)
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not OmegaConf.is_config(node) or leaf not in node:
            raise ConfigError(f"unknown config key {key!r} in override {item!r}")
        current = node[leaf]
        if not eval_override_allowed(key) and current != value:
            raise ConfigError(f"{key}={value!r} does not match the checkpoint, which was trained with {key}={current!r} "
                              f"(an evaluation may only change: {', '.join(eval_override_keys())})")
        OmegaConf.update(cfg, key, value, force_add=False)
    return from_container(OmegaConf.to_container(cfg))


def _override_value(overrides: Sequence[str], key: str) -> Optional[str]:
    for item in overrides:
        k, value = parse_override(item)
        if k == key:
            return str(value)
    return None


def find_run(uri: str, target: str, experiment: Optional[str] = None):
    """The run with id ``target``, else the newest run named ``target`` (in ``experiment``, default any), else None."""
    client = runs.client(uri)
    try:
        return client.get_run(target)
    except Exception:
        pass
    if experiment is None:
        experiments = [e.experiment_id for e in client.search_experiments()]
    else:
        found = client.get_experiment_by_name(experiment)
        experiments = [found.experiment_id] if found else []
    if not experiments:
        return None
    found = client.search_runs(experiments, filter_string=f"tags.`{runs.RUN_NAME_TAG}` = '{target}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


def _download_checkpoint(uri: str, run_id: str, directory: str) -> Path:
    """The run's ``checkpoint/state.pt`` artifact (``tracking.log_checkpoint=true``), downloaded into ``directory``."""
    try:
        return Path(runs.client(uri).download_artifacts(run_id, CHECKPOINT_ARTIFACT, directory))
    except Exception:
        raise CheckpointError(f"run {run_id} has no {CHECKPOINT_ARTIFACT} artifact "
                              "(train with tracking.log_checkpoint=true, or pass the checkpoint path)") from None


def resolve(target: str, overrides: Sequence[str] = ()) -> TrainedModel:
    """Load the model and config a trained run (or checkpoint file/folder) holds."""
    uri_override = _override_value(overrides, "tracking.uri")
    path = Path(target).expanduser()
    if path.exists():
        state = ckpt.load_file(path)
        if "config" not in state or "model" not in state:
            raise CheckpointError(f"{path} is not a raysys training checkpoint (it has no config and model)")
        saved = from_container(state["config"])
        uri = resolve_tracking_uri(uri_override or saved.tracking.uri)
        run = runs.find_run(uri, runs.experiment_id(uri, saved.tracking.experiment or saved.paper or "raysys"), saved.run_name) \
            if saved.tracking.enabled else None
        source = str(path)
    else:
        uri = resolve_tracking_uri(uri_override or "")
        run = find_run(uri, target)
        if run is None:
            raise ConfigError(f"{target!r} is neither a preset, a checkpoint path, nor an MLflow run id or run name at {uri}")
        with tempfile.TemporaryDirectory() as directory:
            state = ckpt.load_file(_download_checkpoint(uri, run.info.run_id, directory))
        source = f"run {run.info.run_id}"
    cfg = apply_eval_overrides(from_container(state["config"]), overrides)
    if uri_override is None:
        cfg.tracking.uri = uri
    return TrainedModel(cfg, state["model"], run.info.run_id if run else "", int(state.get("epoch", 0)), source)


def experiment_name(cfg) -> str:
    """The MLflow experiment a preset's runs go to."""
    return cfg.tracking.experiment or cfg.paper or "raysys"


def run_checkpoint(cfg, target: str, directory: str) -> Path:
    """The checkpoint file of the run ``target`` (MLflow run id, or run name in ``cfg``'s experiment at ``tracking.uri``).

    The newest ``state.pt`` under the run's ``raysys.checkpoint_dir``, or, with ``checkpoint.score_attribute``,
    the one whose last epoch scored best; a run without that folder gives its ``checkpoint/state.pt`` artifact
    (downloaded into ``directory``).
    """
    uri = resolve_tracking_uri(cfg.tracking.uri)
    run = find_run(uri, target, experiment_name(cfg))
    if run is None:
        raise ConfigError(f"--run {target!r}: no MLflow run with this id, nor a run of this name in experiment "
                          f"{experiment_name(cfg)!r} at {redact(uri)}")
    folder = run.data.tags.get(CHECKPOINT_DIR_TAG, "")
    files = sorted(Path(folder).glob(f"**/{ckpt.STATE_FILE}"), key=lambda p: p.stat().st_mtime) \
        if folder and "://" not in folder and Path(folder).is_dir() else []
    if not files:
        return _download_checkpoint(uri, run.info.run_id, directory)
    attribute = cfg.checkpoint.score_attribute
    if not attribute:
        return latest_checkpoint_file(Path(folder)) or files[-1]
    return _best_checkpoint(files, attribute, cfg.checkpoint.score_order)


def _best_checkpoint(files: List[Path], attribute: str, order: str) -> Path:
    """The file whose last recorded epoch has the best ``attribute`` (later files win ties); files without it count last."""
    sign = -1.0 if order == "min" else 1.0

    def score(path: Path) -> float:
        history = ckpt.load_file(path).get("history") or [{}]
        value = history[-1].get(attribute)
        return sign * float(value) if value is not None else float("-inf")

    scores = [score(path) for path in files]
    return files[max(range(len(files)), key=lambda i: (scores[i], i))]


def _bare_model(cfg) -> nn.Module:
    """``cfg``'s model without its initial weights (``weights``, e.g. antialias.weights): a checkpoint replaces them."""
    kwargs = model_kwargs(cfg, input_spec(cfg))
    kwargs.pop("weights", None)
    return create_model(cfg.model.name, **kwargs)


def model_family(cfg) -> Optional[str]:
    """The family of ``cfg``'s model, or for a shared model the preset's paper if it is a family (antialiased's
    torchvision baselines), else None; the family's weights modules are imported."""
    family = MODELS.family(cfg.model.name)
    if family is None and cfg.paper in families.names():
        family = cfg.paper
    if family:
        _import_weights_formats(family)
    return family


def _import_weights_formats(family: str) -> None:
    """Import a family's weights formats (``original_format``), which only these commands need."""
    module = f"{families.__name__}.{family}.original_format"
    if importlib.util.find_spec(module) is not None:
        importlib.import_module(module)


def _default_reader(model: nn.Module, source: str, name: str) -> Dict[str, torch.Tensor]:
    stored = read_weights(source)
    if stored.arch and stored.arch != name:
        raise CheckpointError(f"checkpoint {source} is of {stored.arch}, not of {name}")
    return stored.state


def read_for_model(cfg, model: nn.Module, source: str, family_checks: bool = True) -> Dict[str, torch.Tensor]:
    """The state_dict of the weights file ``source`` for ``cfg``'s model, read by the family's reader
    (without ``family_checks``: raysys's generic reader), and checked to load."""
    family = model_family(cfg)
    reader = WEIGHTS_READERS.get(family) if family_checks and family in WEIGHTS_READERS else _default_reader
    state = reader(model, str(source), cfg.model.name)
    load_state(model, state, str(source))  # refuses a file of another model, in one line
    return state


def _write_raysys(model: nn.Module, cfg, out: str) -> Dict[str, Any]:
    state = model.state_dict()
    return {"weights": str(save_weights(state, out, arch=cfg.model.name)), "tensors": len(state)}


def original_family(cfg) -> str:
    """The family whose original layout ``--format original`` writes; ConfigError for a model without one."""
    family = model_family(cfg)
    if family not in ORIGINAL_FORMATS:
        for name in families.names():  # every family's format, for the list below
            _import_weights_formats(name)
        raise ConfigError(f"--format original: model.name={cfg.model.name} (family {family or 'none: a shared model'}) "
                          f"has no original format; families with one: {', '.join(ORIGINAL_FORMATS.names())}")
    return family


def _write_original(model: nn.Module, cfg, out: str) -> Dict[str, Any]:
    family = original_family(cfg)
    payload = ORIGINAL_FORMATS.get(family)(model, cfg.model.name)
    ckpt.save_atomic(payload, Path(out))
    bare = all(isinstance(v, torch.Tensor) for v in payload.values())
    tensors = payload if bare else next(v for v in payload.values() if isinstance(v, dict))
    return {"weights": str(out), "family": family, "layout": "state_dict" if bare else sorted(payload), "tensors": len(tensors)}


def _is_raysys_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds ``{"model": state_dict, ...}``: a training checkpoint (read as it was saved, whatever
    initial weights the family would accept), or FlexConv's original file (the same keys)."""
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not weights-only loadable (an original MIMOConv file), or missing: the family's reader says why
        return False
    return isinstance(stored, dict) and isinstance(stored.get("model"), dict)


# --format: how export-weights writes the weights of the loaded model.
EXPORT_FORMATS: Dict[str, Callable[[nn.Module, Any, str], Dict[str, Any]]] = {
    "raysys": _write_raysys,
    "original": _write_original,
}


def export_weights(cfg, checkpoint: str = "", out: str = "", *, run: str = "", fmt: str = "raysys") -> Dict[str, Any]:
    """Write the model weights of ``checkpoint`` (a raysys checkpoint, its folder, or a weights file the family
    reads) or of the run ``run`` to ``out``, in format ``fmt`` (:data:`EXPORT_FORMATS`), after checking they fit
    ``cfg``'s model."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format: {one_of(fmt, EXPORT_FORMATS)}")
    if bool(checkpoint) == bool(run):
        raise ConfigError("export-weights takes one of --checkpoint PATH or --run RUN_ID_OR_NAME")
    if fmt == "original":
        original_family(cfg)  # refused before any checkpoint is read
    with tempfile.TemporaryDirectory() as directory:
        source = run_checkpoint(cfg, run, directory) if run else Path(checkpoint)
        if source.is_dir():
            source = source / ckpt.STATE_FILE
        model = _bare_model(cfg)
        read_for_model(cfg, model, str(source), family_checks=not _is_raysys_checkpoint(source))
        result = EXPORT_FORMATS[fmt](model, cfg, out)
    return {**result, "format": fmt, "source": f"run {run}" if run else str(source)}
