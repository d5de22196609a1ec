"""The raysys side of the training benchmarks: a config and ``raysys train``'s own driver."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Dict, List, Sequence

from raysys.track import runs

PRESET = "cifar-resnet/cifar10-resnet20"


def bench_config(shards: Path, workdir: Path, *, epochs: int, batch: int, workers: int, threads: int,
                 extra: Sequence[str] = ()):
    """The CIFAR-10 ResNet-20 preset on ``shards``, tracked in ``workdir``'s own MLflow and runs."""
    from raysys.config import load_config

    return load_config(PRESET, [
        f"data.path={shards}", f"train.epochs={epochs}", f"train.batch_size={batch}",
        f"scaling.num_workers={workers}", f"scaling.cpus_per_worker={threads}", f"scaling.torch_threads={threads}",
        f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}", f"checkpoint.storage_path={workdir / 'runs'}", *extra,
    ])


class RaysysTraining:
    """Each call is one new ``raysys train`` run (``run_training``, as the CLI calls it); returns images trained."""

    _numbers = itertools.count()

    def __init__(self, shards: Path, workdir: Path, images: int, *, limit: int = 0, **config):
        self.shards, self.workdir, self.config = shards, workdir, config
        self.images = min(images, limit) if limit > 0 else images
        # ``limit``: train and test on the first ``limit`` images only (e.g. a short warm-up run).
        self.limits = [f"data.limit={limit}", f"data.test_limit={limit}"] if limit > 0 else []
        self.run_ids: List[str] = []

    def __call__(self) -> int:
        from raysys.driver.training import run_training

        extra = [f"run_name=bench-{next(self._numbers)}", *self.limits]
        cfg = bench_config(self.shards, self.workdir, **self.config, extra=extra)
        summary = run_training(cfg, progress=False)
        self.run_ids.append(summary["run_id"])
        return self.images * cfg.train.epochs

    def epoch_metric(self, key: str) -> Dict[str, List[float]]:
        """run id -> the metric ``key`` (either spelling, :mod:`raysys.track.metric_names`) of each epoch, from MLflow."""
        client = runs.client(f"sqlite:///{self.workdir / 'mlflow.db'}")
        return {
            run_id: [m.value for m in sorted(runs.metric_history(client, run_id, key), key=lambda m: m.step)]
            for run_id in self.run_ids
        }


def _return_at_once(config=None) -> None:
    """A training function that does nothing: what Ray Train costs before and after any work."""


class EmptyRayTrainFit:
    """Each call is one ``TorchTrainer.fit`` of a function that returns at once, with ``raysys train``'s
    ScalingConfig: Ray Train's own per-run cost (controller, worker, helper actors, process group)."""

    _numbers = itertools.count()

    def __init__(self, cfg):
        self.cfg = cfg

    def __call__(self) -> int:
        import ray.train
        from ray.train.torch import TorchTrainer

        from raysys.train.session import worker_scaling

        TorchTrainer(
            _return_at_once,
            scaling_config=worker_scaling(self.cfg.scaling, use_gpu=False),
            run_config=ray.train.RunConfig(
                name=f"empty-fit-{next(self._numbers)}", storage_path=self.cfg.checkpoint.storage_path,
            ),
        ).fit()
        return 0
