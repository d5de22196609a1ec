"""``raysys runs repair``: close runs no live process holds, restore params and config a run lacks.

For stores written before every attempt logged its params, or by a driver that was
killed (SIGKILL, a lost node) and never came back. A RUNNING run counts as dead only
when its heartbeat is older than :data:`raysys.driver.record.STALE_AFTER_S`; runs
recorded before heartbeats count from their start time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from raysys.config.loader import flatten, from_container, to_yaml
from raysys.driver import record as rec
from raysys.track import runs
from raysys.track.uri import redact
from raysys.train import checkpoint as ckpt
from raysys.train.session import resolve_storage_path


@dataclass
class Repair:
    run_id: str
    run_name: str
    action: str  # "closed", "restored config", "left running (alive)", "no checkpoint to restore from"
    detail: str = ""


@dataclass
class RepairReport:
    tracking_uri: str
    repairs: List[Repair] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"tracking_uri": redact(self.tracking_uri),
                "repairs": [{"run_id": r.run_id, "run_name": r.run_name, "action": r.action, "detail": r.detail} for r in self.repairs]}


def latest_checkpoint_file(folder: Path) -> Optional[Path]:
    """The newest ``state.pt`` below a Ray Train run folder, or None."""
    if not folder.is_dir():
        return None
    files = sorted(folder.glob(f"**/{ckpt.STATE_FILE}"), key=lambda p: p.stat().st_mtime)
    return files[-1] if files else None


def _checkpoint_folder(run, storage_path: str) -> Path:
    recorded = run.data.tags.get(rec.CHECKPOINT_DIR_TAG)
    if recorded and "://" not in recorded:
        return Path(recorded)
    # runs recorded before the tag: Ray Train's folder was named as the run
    return Path(resolve_storage_path(storage_path)) / run.data.tags.get(runs.RUN_NAME_TAG, run.info.run_name)


def _restore_config(uri: str, run, storage_path: str, dry_run: bool) -> Optional[Repair]:
    has_params = bool(run.data.params)
    has_config = runs.has_artifact(uri, run.info.run_id, rec.CONFIG_ARTIFACT)
    if has_params and has_config:
        return None
    name = run.data.tags.get(runs.RUN_NAME_TAG, run.info.run_name)
    if run.data.tags.get(rec.KIND_TAG) == "eval":
        return None
    found = latest_checkpoint_file(_checkpoint_folder(run, storage_path))
    if found is None:
        return Repair(run.info.run_id, name, "no checkpoint to restore from", str(_checkpoint_folder(run, storage_path)))
    cfg = from_container(ckpt.load_file(found)["config"])
    if not dry_run:
        missing = {k: v for k, v in flatten(cfg).items() if k not in run.data.params}
        if missing:
            runs.log_params(uri, run.info.run_id, missing)
        if not has_config:
            runs.log_text(uri, run.info.run_id, redact(to_yaml(cfg)), rec.CONFIG_ARTIFACT)
    return Repair(run.info.run_id, name, "restored params and config.yaml", str(found))


def repair(uri: str, experiments: Sequence[str] = (), *, storage_path: str = "", dry_run: bool = False) -> RepairReport:
    """Close dead RUNNING runs as FAILED; restore missing params and config.yaml from checkpoints."""
    mlflow_client = runs.client(uri)
    if experiments:
        ids = [e.experiment_id for e in (mlflow_client.get_experiment_by_name(n) for n in experiments) if e is not None]
    else:
        ids = [e.experiment_id for e in mlflow_client.search_experiments()]
    report = RepairReport(uri)
    if not ids:
        return report
    for run in mlflow_client.search_runs(ids, max_results=50_000):
        name = run.data.tags.get(runs.RUN_NAME_TAG, run.info.run_name)
        if run.info.status == "RUNNING":
            if not rec.is_dead(run):
                report.repairs.append(Repair(run.info.run_id, name, "left running (alive)",
                                             f"heartbeat {rec.heartbeat_age_s(run):.0f} s ago"))
                continue
            reason = f"the driver died without closing the run (last heartbeat {run.data.tags.get(rec.HEARTBEAT_TAG, 'never')})"
            if not dry_run:
                runs.finish(uri, run.info.run_id, "FAILED", reason)
            report.repairs.append(Repair(run.info.run_id, name, "closed as FAILED", reason))
        restored = _restore_config(uri, run, storage_path, dry_run)
        if restored:
            report.repairs.append(restored)
    return report
