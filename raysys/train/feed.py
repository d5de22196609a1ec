"""Rank 0 -> driver: each checkpointed epoch, for MLflow and the progress bar.

The driver already holds an open MLflow client (it opened the run), so the
per-epoch metrics are logged there: a Ray Train worker never imports MLflow
or opens its store just to log a number (seconds of CPU in every fresh worker,
``bench train-overhead``), and workers need no access to the tracking server.

Rank 0 sends only epochs whose checkpoint Ray Train has recorded, and after a
restart the whole history restored from the checkpoint; the driver logs every
epoch MLflow does not have yet, so a re-done epoch is never logged twice and a
resumed run fills its gaps.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from raysys.errors import TrainingError
from raysys.track import runs

log = logging.getLogger(__name__)
_END = ("end",)


class FeedSender:
    """Rank 0's end of the feed: a Ray queue of ("epochs", [metrics, ...]) and ("final", step, metrics)."""

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


class EpochLog:
    """The driver's MLflow logging: each epoch's step once, retried while the server fails."""

    def __init__(self, uri: str, run_id: str):
        self.uri, self.run_id = uri, run_id
        self._logged: Optional[Set[int]] = None  # asked of MLflow at the first epoch (a resumed run has some)
        self._epochs: Dict[int, Dict[str, float]] = {}
        self._final: List[Tuple[int, Dict[str, float]]] = []
        self.error: Optional[BaseException] = None

    def epoch(self, metrics: Dict[str, float]) -> None:
        if self.run_id:
            self._epochs.setdefault(int(metrics["epoch"]), metrics)
            self.flush()

    def final(self, step: int, metrics: Dict[str, float]) -> None:
        """The recipe's metrics after the last epoch (e.g. of the best weights), at ``step``."""
        if self.run_id:
            self._final.append((step, metrics))
            self.flush()

    @property
    def pending(self) -> List[int]:
        return sorted(self._epochs) + [step for step, _ in self._final]

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
            while self._final:
                runs.log_metrics(self.uri, self.run_id, self._final[0][1], step=self._final[0][0])
                self._final.pop(0)
            self.error = None
        except Exception as exc:  # noqa: BLE001 - the server may come back; close() raises if it does not
            if self.error is None:
                log.warning("logging to MLflow failed (%s); retrying with the next epoch", exc)
            self.error = exc

    def close(self) -> None:
        """Log anything still pending; raise if MLflow still refuses it."""
        self.flush()
        if self.pending:
            raise TrainingError(f"could not log epochs {self.pending} to MLflow at {self.uri}: {self.error}")


class EpochFeed:
    """The driver's end: a Ray queue that rank 0 fills while ``fit`` runs, read into MLflow and a tqdm bar."""

    def __init__(self, uri: str, run_id: str, *, total_epochs: int = 0, desc: str = "", progress: bool = False):
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # On the driver's node (a lost worker node must not take the queue with it), and
        # num_cpus=0: placeable while trainers hold every CPU (a sweep on a full cluster).
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
        self.log = EpochLog(uri, run_id)
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_epochs, desc=desc, unit="epoch", dynamic_ncols=True)

    def follow(self, fit: Callable[[], Any]) -> Any:
        """Run ``fit`` in a thread while logging what arrives; return its result or raise its error."""
        outcome: Dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = fit()
            except BaseException as exc:  # re-raised in the caller's thread
                outcome["error"] = exc
            finally:
                self.queue.put(_END)  # after every message of rank 0: its puts returned before fit did

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
            self._show(message[1][-1])
        elif message[0] == "final":
            self.log.final(message[1], message[2])

    def _show(self, metrics: Dict[str, float]) -> None:
        if self.bar is None:
            return
        self.bar.n = int(metrics["epoch"])
        shown = {k: metrics[k] for k in ("train_loss", "test_acc", "images_per_sec") if k in metrics}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=True)

    def close(self) -> None:
        import ray

        if self.bar is not None:
            self.bar.close()
        ray.kill(self.queue.actor)
