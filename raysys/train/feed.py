"""Rank 0 -> driver: each checkpointed epoch, for MLflow and the progress bar; then the run's end.

The driver already holds an open MLflow client (it opened the run), so the
per-epoch metrics are logged there: a Ray Train worker never imports MLflow
or opens its store just to log a number (seconds of CPU in every fresh worker,
``bench train-overhead``), and workers need no access to the tracking server.

Rank 0 sends only epochs whose checkpoint Ray Train has recorded, and after a
restart the whole history restored from the checkpoint; the driver logs every
epoch MLflow does not have yet, so a re-done epoch is never logged twice and a
resumed run fills its gaps.

While an epoch runs rank 0 also sends its progress (``("progress", {...})``, at most
every :data:`PROGRESS_INTERVAL_S`) and after each epoch its metrics for the console
(``("shown", metrics)``): both only for the driver's display (:mod:`raysys.console.progress`),
never logged.

After the last epoch rank 0 sends what the recipe logged at the end (params, tags,
artifacts as file bytes with their artifact path: STIR's ``generalization.csv`` and
``errors.npz``) and the final metrics; the driver logs them with its client, in
the order they came, retrying like the epochs.

A pack (several runs one after another in one worker group, :mod:`raysys.train.pack`) shares
one feed: rank 0 sends ``("begin_run", index)`` before a run's messages and
``("end_run", index, checkpoint, metrics)`` after them, and the driver's :class:`PackFeed`
logs each run's messages into that run.
"""
from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, List, Optional, Set

from raysys.console.progress import make_display
from raysys.errors import TrainingError
from raysys.track import runs

log = logging.getLogger(__name__)
_END = ("end",)
PROGRESS_INTERVAL_S = 0.25  # rank 0 sends at most 4 progress messages a second


class FeedSender:
    """Rank 0's end of the feed: a Ray queue of messages.

    ``("epochs", [metrics, ...])``, ``("final", step, metrics)``, ``("params", {name: value})``,
    ``("tags", {name: value})`` and ``("artifact", artifact_file, data)`` (``data``: the file's bytes,
    ``artifact_file``: its path in the run's artifacts).
    """

    def __init__(self, queue):
        self.queue = queue
        self.sent = 0

    def epochs(self, history: List[Dict[str, float]]) -> None:
        """Send the epochs of ``history`` not sent yet by this worker (all of it after a restart)."""
        if self.queue is not None and len(history) > self.sent:
            self.queue.put(("epochs", list(history[self.sent:])))
            self.sent = len(history)

    def final(self, step: int, metrics: Dict[str, float]) -> None:
        if self.queue is not None and metrics:
            self.queue.put(("final", step, dict(metrics)))

    def progress(self, state: Dict[str, float]) -> None:
        """Progress inside an epoch, for the driver's display (see :class:`ProgressTicker`)."""
        if self.queue is not None:
            self.queue.put(("progress", dict(state)))

    def shown(self, metrics: Dict[str, float]) -> None:
        """A finished epoch's metrics for the driver's display (every epoch, checkpointed or not)."""
        if self.queue is not None:
            self.queue.put(("shown", dict(metrics)))

    def send(self, messages: List[tuple]) -> None:
        """Send ``("params", ...)``, ``("tags", ...)`` and ``("artifact", ...)`` messages, one at a time."""
        for message in messages:
            if message[0] not in ("params", "tags", "artifact"):
                raise ValueError(f"not a feed message: {message[0]!r}")
            if self.queue is not None:
                self.queue.put(tuple(message))

    def params(self, params: Dict[str, Any]) -> None:
        self.send([("params", dict(params))])

    def tags(self, tags: Dict[str, Any]) -> None:
        self.send([("tags", dict(tags))])

    def artifact(self, artifact_file: str, data: bytes) -> None:
        self.send([("artifact", str(artifact_file), bytes(data))])

    def begin_run(self, index: int) -> None:
        """The messages that follow belong to run ``index`` of a pack."""
        if self.queue is not None:
            self.queue.put(("begin_run", int(index)))

    def end_run(self, index: int, checkpoint: str, metrics: Dict[str, Any]) -> None:
        """Run ``index`` of a pack ended: its newest checkpoint folder and its last reported metrics."""
        if self.queue is not None:
            self.queue.put(("end_run", int(index), str(checkpoint), dict(metrics)))


class ProgressTicker:
    """Rank 0's progress inside one epoch, sent at most every ``interval`` seconds.

    ``tick`` is called after every batch; it reads the running sums (device tensors:
    a GPU sync) only when a message is due.
    """

    def __init__(self, sender: Optional[FeedSender], *, epoch: int, batches: int, world_size: int,
                 lr: Callable[[], float], interval: float = PROGRESS_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.sender, self.epoch, self.batches, self.world_size = sender, epoch, batches, world_size
        self.lr, self.interval, self.clock = lr, interval, clock
        self.start = clock()
        self.last = self.start

    def tick(self, batch: int, seen: int, loss_sum: Any, correct: Any) -> None:
        if self.sender is None:
            return
        now = self.clock()
        if now - self.last < self.interval and batch != self.batches:  # the epoch's last batch is always shown
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        self.sender.progress({
            "epoch": self.epoch, "batch": batch, "batches": self.batches,
            "loss": float(loss_sum) / max(seen, 1), "acc": float(correct) / max(seen, 1),
            "lr": float(self.lr()), "elapsed": elapsed,
            # rank 0's pace times the workers: the run's images per second
            "images_per_sec": seen * self.world_size / elapsed,
        })


class EpochLog:
    """The driver's MLflow logging: each epoch's step once, retried while the server fails."""

    def __init__(self, uri: str, run_id: str):
        self.uri, self.run_id = uri, run_id
        self._logged: Optional[Set[int]] = None  # asked of MLflow at the first epoch (a resumed run has some)
        self._epochs: Dict[int, Dict[str, float]] = {}
        self._others: List[tuple] = []  # ("final", step, metrics), ("params", ...), ("tags", ...), ("artifact", ...)
        self.error: Optional[BaseException] = None

    def epoch(self, metrics: Dict[str, float]) -> None:
        if self.run_id:
            self._epochs.setdefault(int(metrics["epoch"]), metrics)
            self.flush()

    def final(self, step: int, metrics: Dict[str, float]) -> None:
        """The recipe's metrics after the last epoch (e.g. of the best weights), at ``step``."""
        if self.run_id:
            self._others.append(("final", step, metrics))
            self.flush()

    def params(self, params: Dict[str, Any]) -> None:
        if self.run_id:
            self._others.append(("params", params))
            self.flush()

    def tags(self, tags: Dict[str, Any]) -> None:
        if self.run_id:
            self._others.append(("tags", tags))
            self.flush()

    def artifact(self, artifact_file: str, data: bytes) -> None:
        """A file of the run's artifacts at path ``artifact_file`` (e.g. ``generalization.csv``, ``eval/x.csv``)."""
        if self.run_id:
            self._others.append(("artifact", artifact_file, data))
            self.flush()

    @property
    def pending(self) -> List[Any]:
        """What is not logged yet: epochs and final steps (ints), then "params", "tags", "artifact <path>"."""
        described = {"final": lambda m: m[1], "params": lambda m: "params", "tags": lambda m: "tags",
                     "artifact": lambda m: f"artifact {m[1]}"}
        return sorted(self._epochs) + [described[m[0]](m) for m in self._others]

    def flush(self) -> None:
        """Log what is pending; on an error keep it for the next call and remember the error."""
        if not self.pending:
            return
        try:
            if self._logged is None:
                self._logged = set(runs.logged_steps(self.uri, self.run_id, "epoch"))
            for step in sorted(self._epochs):
                if step not in self._logged:
                    runs.log_metrics(self.uri, self.run_id, self._epochs[step], step=step)
                    self._logged.add(step)
                del self._epochs[step]
            while self._others:
                self._log(self._others[0])
                self._others.pop(0)
            self.error = None
        except Exception as exc:  # noqa: BLE001 - the server may come back; close() raises if it does not
            if self.error is None:
                log.warning("logging to MLflow failed (%s); retrying with the next epoch", exc)
            self.error = exc

    def _log(self, message: tuple) -> None:
        kind = message[0]
        if kind == "final":
            runs.log_metrics(self.uri, self.run_id, message[2], step=message[1])
        elif kind == "params":
            runs.log_params(self.uri, self.run_id, message[1])
        elif kind == "tags":
            runs.set_tags(self.uri, self.run_id, message[1])
        elif kind == "artifact":
            artifact_file, data = PurePosixPath(message[1]), message[2]
            with tempfile.TemporaryDirectory() as directory:
                path = Path(directory) / artifact_file.name
                path.write_bytes(data)
                folder = str(artifact_file.parent)
                runs.log_artifact_files(self.uri, self.run_id, [path], None if folder == "." else folder)

    def close(self) -> None:
        """Log anything still pending; raise if MLflow still refuses it."""
        self.flush()
        if self.pending:
            raise TrainingError(f"could not log epochs {self.pending} to MLflow at {self.uri}: {self.error}")


class EpochFeed:
    """The driver's end: a Ray queue that rank 0 fills while ``fit`` runs, read into MLflow and the progress display.

    ``progress``: True (a bar on a terminal, plain lines elsewhere), "bar", "lines" or False
    (:func:`raysys.console.progress.make_display`).
    """

    def __init__(self, uri: str, run_id: str, *, total_epochs: int = 0, desc: str = "", progress: Any = False):
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # On the driver's node (a lost worker node must not take the queue with it), and
        # num_cpus=0: placeable while trainers hold every CPU (a sweep on a full cluster).
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
        self.log = EpochLog(uri, run_id)

        self.display = make_display(progress, total_epochs, desc)

    def follow(self, fit: Callable[[], Any]) -> Any:
        """Run ``fit`` in a thread while logging what arrives; return its result or raise its error."""
        outcome: Dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = fit()
            except BaseException as exc:  # re-raised in the caller's thread
                outcome["error"] = exc
            finally:
                try:
                    self.queue.put(_END)  # after every message of rank 0: its puts returned before fit did
                except Exception:  # noqa: BLE001 - the follower stopped (Ctrl-C, SIGTERM) and Ray with it
                    pass

        thread = threading.Thread(target=run, name="raysys-fit", daemon=True)
        thread.start()
        while True:
            message = self.queue.get()
            if message == _END:
                break
            self.receive(message)
        thread.join()
        if "error" in outcome:
            self.log.flush()  # best effort: the epochs before the failure
            raise outcome["error"]
        self.log.close()
        return outcome["result"]

    def receive(self, message: tuple) -> None:
        if message[0] == "epochs":
            for metrics in message[1]:
                self.log.epoch(metrics)
        elif message[0] == "progress":
            if self.display is not None:
                self.display.update(message[1])
        elif message[0] == "shown":
            if self.display is not None:
                self.display.epoch_done(message[1])
        elif message[0] == "final":
            self.log.final(message[1], message[2])
        elif message[0] == "params":
            self.log.params(message[1])
        elif message[0] == "tags":
            self.log.tags(message[1])
        elif message[0] == "artifact":
            self.log.artifact(message[1], message[2])

    @property
    def wants_progress(self) -> bool:
        """Whether rank 0 should send progress and epoch summaries (someone shows them)."""
        return self.display is not None

    def close(self) -> None:
        import ray

        if self.display is not None:
            self.display.close()
        ray.kill(self.queue.actor)


class PackFeed(EpochFeed):
    """The feed of a pack: ``begin_run`` and ``end_run`` switch the run that the messages between them go to.

    ``begin(index)`` returns the run's :class:`EpochLog` (the driver opens its MLflow run);
    ``end(index, checkpoint, metrics, log)`` closes it. Messages outside a run are dropped.
    """

    def __init__(self, uri: str, begin: Callable[[int], EpochLog],
                 end: Callable[[int, str, Dict[str, Any], EpochLog], None]):
        super().__init__(uri, "", progress=False)
        self._begin, self._end = begin, end

    def receive(self, message: tuple) -> None:
        if message[0] == "begin_run":
            self.log = self._begin(message[1])
        elif message[0] == "end_run":
            ended, self.log = self.log, EpochLog(self.log.uri, "")
            self._end(message[1], message[2], message[3], ended)
        else:
            super().receive(message)
