"""One run's session inside a pack of runs: its checkpoints in its own folder, its reports tagged with its name.

A pack (:mod:`raysys.train.pack`) trains several runs one after another in one Ray Train
worker group. Ray Train's checkpoints belong to the pack's ``fit()``; each run keeps its own
instead, in the folder a run of its own has (``<checkpoint.storage_path>/<its Ray Train
name>``, Ray Train's layout: ``checkpoint_<time>/state.pt``), so ``raysys checkpoints``,
``export-weights --run`` and a later resume find them. Rank 0 writes each checkpoint there
(atomically: a hidden folder, then a rename) and keeps ``checkpoint.num_to_keep`` of them
as Ray Train does (the best by ``checkpoint.score_attribute`` where one is set, and always
the newest). Its metrics still go to ``ray.train.report``, with :data:`RUN_NAME_KEY`, so a
sweep's Tune callback shows them on the run's own row.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from raysys.train import checkpoint as ckpt

RUN_NAME_KEY = "raysys_run"  # in a pack's reports: the run (MLflow run name) they belong to
CHECKPOINT_PREFIX = "checkpoint_"  # Ray Train's checkpoint folder names: checkpoint_<date>_<time>.<µs>


def checkpoint_folders(folder: Path) -> List[Path]:
    """The checkpoints of a run folder, oldest first (by their state file's time, then name)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p.parent for p in folder.glob(f"{CHECKPOINT_PREFIX}*/{ckpt.STATE_FILE}")]
    return sorted(found, key=lambda p: ((p / ckpt.STATE_FILE).stat().st_mtime, p.name))


def _checkpoint_name() -> str:
    return CHECKPOINT_PREFIX + dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S.%f")


class RunFolderSession:
    """The loop's session (:class:`raysys.train.loop.RayTrainSession`'s methods) for one run of a pack.

    ``run``: ``folder`` (where its checkpoints go), ``run_name``, ``dataset`` (its own train
    stream's name among the pack's datasets) and ``config`` (its checkpoint settings are read).
    """

    def __init__(self, run: Dict[str, Any]):
        self.folder = Path(run["folder"])
        self.run_name = str(run["run_name"])
        self.datasets = {"train": str(run["dataset"])}
        settings = run["config"]["checkpoint"]
        self.num_to_keep = int(settings.get("num_to_keep") or 0)
        self.score_attribute = str(settings.get("score_attribute") or "")
        self.score_order = str(settings.get("score_order") or "max")
        self._scores: Dict[str, Optional[float]] = {}
        self.last_metrics: Dict[str, Any] = {}  # the latest report's metrics (the run's result)

    def get_checkpoint(self):
        """The run's newest checkpoint (a Ray ``Checkpoint``), or None for a run that has none yet."""
        from ray.train import Checkpoint

        found = checkpoint_folders(self.folder)
        return Checkpoint.from_directory(str(found[-1])) if found else None

    def get_dataset_shard(self, name: str):
        import ray.train

        return ray.train.get_dataset_shard(self.datasets.get(name, name))

    def report(self, metrics: Dict[str, Any], checkpoint=None) -> None:
        """Keep ``checkpoint`` (rank 0's) in the run's folder first, then report ``metrics`` to Ray Train."""
        import ray.train

        if checkpoint is not None:
            self._keep(checkpoint, metrics)
        self.last_metrics = dict(metrics)
        ray.train.report({**metrics, RUN_NAME_KEY: self.run_name})

    def latest_path(self) -> str:
        """The folder of the run's newest checkpoint ('' without one)."""
        found = checkpoint_folders(self.folder)
        return str(found[-1]) if found else ""

    # -- keeping checkpoints ---------------------------------------------------------------
    def _keep(self, checkpoint, metrics: Dict[str, Any]) -> None:
        name = _checkpoint_name()
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = self.folder / f".{name}.tmp"
        with checkpoint.as_directory() as directory:
            shutil.copytree(directory, staging)
        os.replace(staging, self.folder / name)
        value = metrics.get(self.score_attribute) if self.score_attribute else None
        self._scores[name] = float(value) if value is not None else None
        self._prune()

    def _score(self, path: Path) -> float:
        """The checkpoint's ``score_attribute`` signed so that larger is better; -inf without it."""
        if path.name not in self._scores:  # written by an earlier attempt: its last epoch's metrics
            history = ckpt.load_file(path).get("history") or [{}]
            value = history[-1].get(self.score_attribute)
            self._scores[path.name] = float(value) if value is not None else None
        value = self._scores[path.name]
        if value is None:
            return float("-inf")
        return -value if self.score_order == "min" else value

    def _prune(self) -> None:
        if self.num_to_keep <= 0:
            return
        found = checkpoint_folders(self.folder)
        if self.score_attribute:
            kept = set(sorted(found, key=self._score, reverse=True)[: self.num_to_keep]) | {found[-1]}
        else:
            kept = set(found[-self.num_to_keep:])
        for path in found:
            if path not in kept:
                shutil.rmtree(path, ignore_errors=True)
