"""A pack: several runs of one sweep row (its seeds), one after another, in one Ray Train worker group.

Ray Train pays its fixed cost (a controller, the workers, their helpers, the process group)
once per ``fit()``; a pack's ``fit()`` trains k runs, so it pays it once per k runs. Each run
goes through the generic loop (:func:`raysys.train.loop.train_loop_per_worker`) with its own
session (:class:`raysys.train.run_folder.RunFolderSession`: its checkpoints, its train stream,
its name on its reports), so it trains as a run of its own would, seeded by its own seed.

Rank 0 tells the driver where each run begins and ends (``begin_run``/``end_run`` on the
feed, :mod:`raysys.train.feed`); the driver opens and closes the run's MLflow record there.
A worker group restarted by Ray Train (``failure.max_failures``) goes through the runs again:
each resumes from its newest checkpoint, so an ended run only repeats its end.
"""
from __future__ import annotations

from typing import Any, Dict

from raysys.train.feed import FeedSender
from raysys.train.loop import train_loop_per_worker
from raysys.train.run_folder import RunFolderSession


def train_pack_per_worker(loop_config: Dict[str, Any]) -> None:
    """Ray Train entry point of a pack: ``loop_config["runs"]`` one after another, each as its own run.

    Every key but ``runs`` is shared by the runs (data format, input, rows, feed); each entry of
    ``runs`` gives a run's ``config``, ``run_name``, ``dataset`` and checkpoint ``folder``.
    """
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    sender = FeedSender(loop_config.get("feed")) if rank == 0 else None
    shared = {key: value for key, value in loop_config.items() if key != "runs"}
    for index, run in enumerate(loop_config["runs"]):
        session = RunFolderSession(run)
        if sender:
            sender.begin_run(index)
        train_loop_per_worker({**shared, "config": run["config"], "tracked": True}, session=session)
        if sender:
            sender.end_run(index, session.latest_path(), session.last_metrics)
