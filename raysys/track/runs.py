"""MLflow runs of raysys: one per training run, found again by name to resume.

The driver opens the run (params, tags, config artifact) before any worker
starts and closes it with FINISHED or FAILED and the reason, so a run is
never left RUNNING by an error. The driver also logs the per-epoch metrics
that rank 0 sends it (raysys.train.feed), under their grouped names
(:mod:`raysys.track.metric_names`: ``train_loss`` is recorded as ``train/loss``).
"""
from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from raysys.track import metric_names
from raysys.track.uri import redact

RUN_NAME_TAG = "raysys.run_name"
FAILURE_TAG = "raysys.failure_reason"
MAX_PARAM_LENGTH = 6000


# MLflow's notes on creating or migrating a sqlite store's tables: not the user's business.
SETUP_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration")


def client(uri: str):
    from mlflow.tracking import MlflowClient

    for name in SETUP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def git_commit(cwd: Optional[Path] = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


NOTE_TAG = "mlflow.note.content"  # the description the MLflow UI shows for a run or an experiment
# MLflow 3's UI opens an experiment without this tag in its GenAI view ("Evaluation runs");
# this value opens the runs table and the compare view of model training.
EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"


def experiment_id(uri: str, name: str, description: str = "") -> str:
    """Get or create the experiment; local sqlite stores keep artifacts beside the db.

    ``description`` becomes the experiment's description in the MLflow UI when it has none yet.
    """
    mlflow_client = client(uri)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        artifact_location = None
        if uri.startswith("sqlite:///"):
            root = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
            artifact_location = (root / name).resolve().as_uri()
        try:
            mlflow_client.create_experiment(name, artifact_location=artifact_location)
        except Exception:  # created concurrently by another process
            pass
        experiment = mlflow_client.get_experiment_by_name(name)
    if description and not experiment.tags.get(NOTE_TAG):
        mlflow_client.set_experiment_tag(experiment.experiment_id, NOTE_TAG, description)
    if not experiment.tags.get(EXPERIMENT_KIND_TAG):
        mlflow_client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
    return experiment.experiment_id


def find_run(uri: str, exp_id: str, run_name: str, extra_filter: str = "", tag: str = RUN_NAME_TAG):
    """The newest run of this experiment whose ``tag`` (default: the raysys run name) is ``run_name``, or None."""
    query = f"tags.`{tag}` = '{run_name}'"
    if extra_filter:
        query += f" and {extra_filter}"
    runs = client(uri).search_runs([exp_id], filter_string=query, order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def find_runs(uri: str, exp_id: str, run_name: str, extra_filter: str = "", tag: str = RUN_NAME_TAG, limit: int = 50) -> list:
    """The runs of this experiment whose ``tag`` is ``run_name``, newest first."""
    query = f"tags.`{tag}` = '{run_name}'"
    if extra_filter:
        query += f" and {extra_filter}"
    return list(client(uri).search_runs([exp_id], filter_string=query, order_by=["attributes.start_time DESC"], max_results=limit))


def delete_tag(uri: str, run_id: str, key: str) -> None:
    """Remove tag ``key`` if the run has it."""
    mlflow_client = client(uri)
    if key in mlflow_client.get_run(run_id).data.tags:
        mlflow_client.delete_tag(run_id, key)


def has_artifact(uri: str, run_id: str, path: str) -> bool:
    folder, _, name = path.rpartition("/")
    return any(f.path == path for f in client(uri).list_artifacts(run_id, folder or None))


def param_items(flat: Dict[str, Any]) -> List[Any]:
    from mlflow.entities import Param

    params = []
    for key, value in sorted(flat.items()):
        text = redact(str(value)) if isinstance(value, str) else str(value)
        params.append(Param(key, text[:MAX_PARAM_LENGTH]))
    return params


def log_params(uri: str, run_id: str, flat: Dict[str, Any]) -> None:
    mlflow_client = client(uri)
    params = param_items(flat)
    for start in range(0, len(params), 100):
        mlflow_client.log_batch(run_id, params=params[start : start + 100])


def log_metrics(uri: str, run_id: str, metrics: Dict[str, float], step: int) -> None:
    """Log ``metrics`` at ``step`` under their grouped names (``test_acc`` -> ``test/acc``)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in sorted(metric_names.grouped_metrics(metrics).items())]
    mlflow_client = client(uri)
    for start in range(0, len(items), 500):
        mlflow_client.log_batch(run_id, metrics=items[start : start + 500])


def metric_history(uri_or_client: Any, run_id: str, name: str) -> list:
    """Every logged value of metric ``name`` (grouped or, in an older run, flat spelling), as MLflow's Metric."""
    mlflow_client = client(uri_or_client) if isinstance(uri_or_client, str) else uri_or_client
    for spelling in metric_names.spellings(name):
        found = mlflow_client.get_metric_history(run_id, spelling)
        if found:
            return list(found)
    return []


def logged_steps(uri: str, run_id: str, key: str) -> List[int]:
    return sorted({m.step for m in metric_history(uri, run_id, key)})


def finish(uri: str, run_id: str, status: str, reason: str = "") -> None:
    """Close the run; a FAILED or KILLED run carries its reason as a tag, a FINISHED one none."""
    mlflow_client = client(uri)
    if status == "FINISHED":
        delete_tag(uri, run_id, FAILURE_TAG)
    elif reason:
        mlflow_client.set_tag(run_id, FAILURE_TAG, redact(reason)[:5000])
    mlflow_client.set_terminated(run_id, status)


def set_tags(uri: str, run_id: str, tags: Dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    client(uri).log_batch(run_id, tags=[RunTag(k, redact(str(v))) for k, v in tags.items()])


def open_run(
    uri: str, exp_id: str, key: str, tags: Dict[str, Any], parent_run_id: str = "", name_tag: str = RUN_NAME_TAG,
    run_name: str = "",
) -> tuple[str, bool]:
    """(run_id, resumed): reopen the run whose ``name_tag`` is ``key``, or create it (named ``run_name`` or ``key``)."""
    existing = find_run(uri, exp_id, key, tag=name_tag)
    mlflow_client = client(uri)
    if existing is not None:
        mlflow_client.update_run(existing.info.run_id, status="RUNNING")
        if parent_run_id:
            mlflow_client.set_tag(existing.info.run_id, "mlflow.parentRunId", parent_run_id)
        return existing.info.run_id, True
    all_tags = {name_tag: key, **tags}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = mlflow_client.create_run(exp_id, run_name=run_name or key, tags={k: redact(str(v)) for k, v in all_tags.items()})
    return run.info.run_id, False


def log_artifact_files(uri: str, run_id: str, files: Iterable[Path], artifact_path: str) -> None:
    mlflow_client = client(uri)
    for path in files:
        mlflow_client.log_artifact(run_id, str(path), artifact_path)


def log_text(uri: str, run_id: str, text: str, artifact_file: str) -> None:
    client(uri).log_text(run_id, text, artifact_file)
