"""Trained models from what a user names: an MLflow run id, a run name or a checkpoint path.

``python -m raysys eval <run id | run name | checkpoint> key=value ...`` (and ``raysys stir
analyze``) take the model and its config from the run's checkpoint, so nothing about the
architecture has to be repeated. Overrides may change how and on what the model is evaluated
(``evaluate.*``, the test data, batch sizes, workers, and the keys families declare with
:func:`raysys.eval.overrides.allow_eval_override`, e.g. ``superposition.sup_low``); any other
key must equal the trained value, as the original scripts required the model flags to match
the weights. ``raysys export-weights`` writes a checkpoint's bare weights.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from omegaconf import OmegaConf

from raysys.config.loader import from_container, parse_override
from raysys.errors import CheckpointError, ConfigError
from raysys.eval.overrides import eval_override_allowed, eval_override_keys
from raysys.models import build_model
from raysys.models.weights import load_state, read_weights, save_weights
from raysys.track import runs
from raysys.track.uri import resolve_tracking_uri
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


def find_run(uri: str, target: str):
    """The run with id ``target``, else the newest run named ``target`` (any experiment), else None."""
    client = runs.client(uri)
    try:
        return client.get_run(target)
    except Exception:
        pass
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return None
    found = client.search_runs(experiments, filter_string=f"tags.`{runs.RUN_NAME_TAG}` = '{target}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


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
            try:
                local = runs.client(uri).download_artifacts(run.info.run_id, CHECKPOINT_ARTIFACT, directory)
            except Exception:
                raise CheckpointError(f"run {run.info.run_id} has no {CHECKPOINT_ARTIFACT} artifact "
                                      "(train with tracking.log_checkpoint=true, or pass the checkpoint path)") from None
            state = ckpt.load_file(Path(local))
        source = f"run {run.info.run_id}"
    cfg = apply_eval_overrides(from_container(state["config"]), overrides)
    if uri_override is None:
        cfg.tracking.uri = uri
    return TrainedModel(cfg, state["model"], run.info.run_id if run else "", int(state.get("epoch", 0)), source)


def export_weights(cfg, checkpoint: str, out: str) -> Dict[str, Any]:
    """Save the model weights of ``checkpoint`` (a raysys checkpoint, its folder, or an original
    ``.pth.tar``) to ``out`` as ``{'state_dict': ...}``, after checking they fit ``cfg``'s model."""
    source = Path(checkpoint)
    if source.is_dir():
        source = source / ckpt.STATE_FILE
    stored = read_weights(source)
    if stored.arch and stored.arch != cfg.model.name:
        raise CheckpointError(f"checkpoint {source} is of {stored.arch}, not of {cfg.model.name}")
    state = stored.state
    if "antialias" in cfg:
        cfg.antialias.weights = ""  # the checkpoint replaces any initial weights
    load_state(build_model(cfg, input_spec(cfg)), state, str(source))  # refuses a checkpoint of another model
    written = save_weights(state, out, arch=cfg.model.name)  # the file names its model: loads are checked against it
    return {"weights": str(written), "tensors": len(state)}
