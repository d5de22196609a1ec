"""Evaluate a trained model named by an MLflow run id, a run name or a checkpoint path.

``python -m raysys eval <run id | run name | checkpoint> key=value ...`` takes the
model and its config from the run's checkpoint, so nothing about the
architecture has to be repeated. Overrides may change how and on what the model
is evaluated (``evaluate.*``, the test data, batch sizes, workers, and the keys
families declare with :func:`allow_eval_override`, e.g. ``superposition.sup_low``);
any other key must equal the trained value, as the original scripts required the
model flags to match the weights. Results go into the trained run.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import OmegaConf

from raysys.config.loader import from_container, parse_override
from raysys.errors import CheckpointError, ConfigError
from raysys.eval.evaluators import EVALUATORS
from raysys.track import runs
from raysys.track.uri import resolve_tracking_uri
from raysys.train import checkpoint as ckpt

CHECKPOINT_ARTIFACT = "checkpoint/state.pt"
# Keys (or prefixes ending in ".") an evaluation may set freely.
_EVAL_KEYS: List[str] = [
    "evaluate.", "scaling.", "tracking.", "checkpoint.", "failure.", "seed", "deterministic",
    "data.path", "data.test_split", "data.test_limit", "data.verify_checksums",
    "train.eval_batch_size", "train.amp", "train.channels_last",
]


def allow_eval_override(key: str) -> None:
    """Let ``raysys eval <trained run>`` change ``key`` (a dotted key, or a prefix ending in ".")."""
    if key not in _EVAL_KEYS:
        _EVAL_KEYS.append(key)


def _free(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in _EVAL_KEYS)


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
        if not _free(key) and current != value:
            raise ConfigError(f"{key}={value!r} does not match the checkpoint, which was trained with {key}={current!r} "
                              f"(an evaluation may only change: {', '.join(_EVAL_KEYS)})")
        OmegaConf.update(cfg, key, value, force_add=False)
    return from_container(OmegaConf.to_container(cfg))


def _override_value(overrides: Sequence[str], key: str) -> Optional[str]:
    for item in overrides:
        k, value = parse_override(item)
        if k == key:
            return str(value)
    return None


def _find_run(uri: str, target: str):
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
        run = _find_run(uri, target)
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


def evaluate_trained(target: str, overrides: Sequence[str], names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Evaluate a trained model; metrics and a JSON (and per-mode CSV) artifact go into its run."""
    from raysys.driver.evaluation import run_evaluation

    trained = resolve(target, overrides)
    cfg = trained.cfg
    if not trained.run_id:
        cfg.tracking.enabled = False  # no run to log into: print only
    chosen = list(names or cfg.evaluate.metrics)
    result = run_evaluation(cfg, chosen, state=trained.state, run_id=trained.run_id, step=trained.epoch)
    result["source"] = trained.source
    if trained.run_id:
        uri = cfg.tracking.uri
        stem = "eval/" + "-".join(chosen)
        runs.log_text(uri, trained.run_id, json.dumps({"overrides": list(overrides), **result}, indent=2), f"{stem}.json")
        tables = [EVALUATORS.get(name).table(result) for name in chosen]
        csv_text = "".join(t for t in tables if t)
        if csv_text:
            runs.log_text(uri, trained.run_id, csv_text, f"{stem}.csv")
    return result
