"""Rank 0 -> driver -> MLflow (raysys.train.feed): each epoch once, back-filled, retried."""
from __future__ import annotations

import pytest

from raysys.errors import TrainingError
from raysys.train import feed


class FakeRuns:
    """raysys.track.runs with an in-memory MLflow; ``failures`` calls of log_metrics raise first."""

    def __init__(self, logged=(), failures=0):
        self.calls, self.logged, self.failures = [], set(logged), failures

    def logged_steps(self, uri, run_id, key):
        self.calls.append(("logged_steps", run_id))
        return sorted(self.logged)

    def log_metrics(self, uri, run_id, metrics, step):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("tracking server unreachable")
        self.calls.append(("log_metrics", step, tuple(sorted(metrics))))
        self.logged.add(step)

    def log_params(self, uri, run_id, params):
        self.calls.append(("log_params", dict(params)))

    def set_tags(self, uri, run_id, tags):
        self.calls.append(("set_tags", dict(tags)))

    artifact_failures = 0

    def log_artifact_files(self, uri, run_id, files, artifact_path):
        if self.artifact_failures:
            self.artifact_failures -= 1
            raise ConnectionError("tracking server unreachable")
        self.calls.extend(("log_artifact", artifact_path, path.name, path.read_bytes()) for path in files)


def test_each_epoch_is_logged_once_and_mlflow_is_asked_once_what_it_has(monkeypatch):
    fake = FakeRuns(logged=[1])  # a resumed run: epoch 1 reached MLflow before the restart
    monkeypatch.setattr(feed, "runs", fake)
    log = feed.EpochLog("sqlite:///x.db", "run-1")
    for epoch in (1, 2, 2, 3):  # a restarted worker sends its restored history again
        log.epoch({"epoch": epoch, "loss": 1.0 / epoch})
    log.final(3, {"best_acc": 0.9})
    log.close()
    assert fake.calls == [
        ("logged_steps", "run-1"),
        ("log_metrics", 2, ("epoch", "loss")), ("log_metrics", 3, ("epoch", "loss")),
        ("log_metrics", 3, ("best_acc",)),
    ]


def test_a_failing_tracking_server_is_retried_with_the_next_epoch(monkeypatch):
    fake = FakeRuns(failures=1)
    monkeypatch.setattr(feed, "runs", fake)
    log = feed.EpochLog("http://mlflow:5000", "run-1")
    log.epoch({"epoch": 1})
    assert log.pending == [1] and isinstance(log.error, ConnectionError)
    log.epoch({"epoch": 2})
    log.close()
    assert [c[1] for c in fake.calls if c[0] == "log_metrics"] == [1, 2] and log.error is None


def test_a_server_that_never_recovers_fails_the_run_naming_the_epochs(monkeypatch):
    monkeypatch.setattr(feed, "runs", FakeRuns(failures=100))
    log = feed.EpochLog("http://mlflow:5000", "run-1")
    log.epoch({"epoch": 1})
    log.epoch({"epoch": 2})
    with pytest.raises(TrainingError, match=r"could not log epochs \[1, 2\] to MLflow at http://mlflow:5000"):
        log.close()


def test_without_a_run_nothing_touches_mlflow(monkeypatch):
    fake = FakeRuns()
    monkeypatch.setattr(feed, "runs", fake)
    log = feed.EpochLog("", "")
    log.epoch({"epoch": 1})
    log.final(1, {"x": 1.0})
    log.close()
    assert fake.calls == []


def test_params_tags_and_artifacts_are_logged_in_order_and_retried(monkeypatch):
    fake = FakeRuns()
    fake.artifact_failures = 1  # the first artifact upload fails: kept, retried with the next message
    monkeypatch.setattr(feed, "runs", fake)
    log = feed.EpochLog("http://mlflow:5000", "run-1")
    queue = ListQueue()
    sender = feed.FeedSender(queue)
    sender.epochs([{"epoch": 1}])
    sender.send([("params", {"model": "standard"}), ("artifact", "generalization.csv", b"model,data\n"),
                 ("tags", {"stir_analysis_error": "x"}), ("artifact", "eval/errors.npz", b"\x00\x01")])
    sender.final(1, {"test_acc": 50.0})
    with pytest.raises(ValueError, match="not a feed message"):
        sender.send([("epochs", [])])
    receiver = feed.EpochFeed.__new__(feed.EpochFeed)  # its queue-reading half only
    receiver.log, receiver.bar = log, None
    for message in queue[:3]:
        receiver.receive(message)
    assert log.pending == ["artifact generalization.csv"] and log.error is not None  # the upload failed: kept
    for message in queue[3:]:
        receiver.receive(message)  # the next message retries it first
    assert log.pending == [] and log.error is None
    log.close()
    assert fake.calls == [
        ("logged_steps", "run-1"), ("log_metrics", 1, ("epoch",)),
        ("log_params", {"model": "standard"}),
        ("log_artifact", None, "generalization.csv", b"model,data\n"),
        ("set_tags", {"stir_analysis_error": "x"}),
        ("log_artifact", "eval", "errors.npz", b"\x00\x01"),
        ("log_metrics", 1, ("test_acc",)),
    ]


class ListQueue(list):
    put = list.append


def test_the_sender_sends_new_epochs_once_and_a_restarted_worker_its_whole_history():
    queue = ListQueue()
    sender = feed.FeedSender(queue)
    history = [{"epoch": 1}]
    sender.epochs(history)
    sender.epochs(history)  # nothing new
    history.append({"epoch": 2})
    sender.epochs(history)
    sender.final(2, {})  # a recipe without final metrics sends nothing
    feed.FeedSender(queue).epochs(history)  # restarted from the checkpoint of epoch 2
    assert queue == [("epochs", [{"epoch": 1}]), ("epochs", [{"epoch": 2}]), ("epochs", history)]
    feed.FeedSender(None).epochs(history)  # no feed (no tracking, no progress bar): a no-op


def test_the_driver_logs_what_a_ray_worker_sends_while_fit_runs(ray_cluster, monkeypatch):
    fake = FakeRuns()
    monkeypatch.setattr(feed, "runs", fake)
    epoch_feed = feed.EpochFeed("sqlite:///x.db", "run-1")

    @ray_cluster.remote(num_cpus=0)
    def worker(queue):
        sender = feed.FeedSender(queue)
        history = []
        for epoch in (1, 2):
            history.append({"epoch": epoch, "test_acc": 0.5})
            sender.epochs(history)
        sender.final(2, {"best_acc": 0.5})
        return "trained"

    try:
        assert epoch_feed.follow(lambda: ray_cluster.get(worker.remote(epoch_feed.queue))) == "trained"

        def failing_fit():
            ray_cluster.get(worker.remote(epoch_feed.queue))
            raise RuntimeError("worker died")

        with pytest.raises(RuntimeError, match="worker died"):
            epoch_feed.follow(failing_fit)  # its epochs are logged before the error is raised
    finally:
        epoch_feed.close()
    assert [c[1] for c in fake.calls if c[0] == "log_metrics"] == [1, 2, 2, 2]
