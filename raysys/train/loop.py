"""The generic worker loop that Ray Train runs on every worker.

Per epoch: train on this worker's share of the stream, evaluate on its share
of the test split, all-reduce the sums, report a checkpoint to Ray Train, and
(rank 0) send the epoch to the driver, which logs it to MLflow
(:mod:`raysys.train.feed`). Family behaviour comes from the recipe, whose
hooks are called at named moments (:mod:`raysys.train.recipes`) and whose state
is part of every checkpoint. The worker never imports MLflow: what a recipe
logs (final metrics, params, tags, artifacts) goes to the driver through the feed.

The loop reads its checkpoint and datasets and reports its epochs through a session:
Ray Train's own for a run of its own (:class:`RayTrainSession`), or one run's session
inside a pack of runs (:mod:`raysys.train.run_folder`, a sweep's ``seeds_per_trial``).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import random
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from raysys.config.loader import from_container
from raysys.data.stream import BatchCollator, ImageFormat, iter_batches
from raysys.errors import TrainingError
from raysys.models import InputSpec, build_model
from raysys.train import checkpoint as ckpt
from raysys.train.accumulate import Accumulation
from raysys.train.devices import worker_device
from raysys.train.feed import FeedSender, ProgressTicker
from raysys.train.optim import build_optimizer, build_scheduler
from raysys.train import phases as run_phases
from raysys.train.recipes import build_recipe


def seed_everything(seed: int, rank: int, deterministic: bool) -> None:
    worker_seed = seed * 1000 + rank
    random.seed(worker_seed)
    np.random.seed(worker_seed % 2**32)
    torch.manual_seed(worker_seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def all_reduce(values: List[float], device: torch.device) -> List[float]:
    """Sum ``values`` over the workers (float64; as is without a process group)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RayTrainSession:
    """Where the loop gets its checkpoint and datasets and reports its epochs: Ray Train's session, as is."""

    def get_checkpoint(self):
        import ray.train

        return ray.train.get_checkpoint()

    def get_dataset_shard(self, name: str):
        import ray.train

        return ray.train.get_dataset_shard(name)

    def report(self, metrics: Dict[str, Any], checkpoint=None) -> None:
        import ray.train

        ray.train.report(metrics, checkpoint=checkpoint)


class WorkerContext:
    """What one worker needs: rank, device, data format and the run's identity."""

    def __init__(self, loop_config: Dict[str, Any]):
        import ray.train

        self.cfg = from_container(loop_config["config"])
        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = worker_device()  # the CPU where Ray granted a GPU that CUDA cannot see
        self.fmt = ImageFormat(**loop_config["format"])
        self.spec = InputSpec(**loop_config["input"])
        self.train_rows = int(loop_config["train_rows"])
        self.run_id = loop_config.get("run_id", "")  # "" when the run is not tracked
        # Whether rank 0's logging reaches a run: its id, or a run the driver opens when it begins (a pack's).
        self.tracked = bool(self.run_id or loop_config.get("tracked", False))
        self.feed = loop_config.get("feed")  # raysys.train.feed: a Ray queue to the driver, or None
        self.progress = bool(loop_config.get("progress", False))  # the driver shows progress inside epochs
        self.shuffle_rows = int(loop_config.get("shuffle_rows", 0))
        self.cuda = self.device.type == "cuda"
        self.amp = self.cuda and self.cfg.train.amp
        # channels_last also speeds up oneDNN convolutions on CPU (about 1.15-1.3x for ResNet-20).
        self.channels_last = self.cfg.train.channels_last
        # Set from the recipe: loader batch = train.batch_size x batch_factor; passes over the data per epoch.
        self.batch_factor = 1
        self.passes = 1

    @property
    def per_worker_batch(self) -> int:
        return max(1, self.cfg.train.batch_size // self.world_size) * self.batch_factor

    @property
    def batches_per_epoch(self) -> int:
        """Batches each worker takes per epoch: its equal share of the rows, batched."""
        return math.ceil((self.train_rows // self.world_size) / self.per_worker_batch) * self.passes

    @property
    def accumulation(self) -> Accumulation:
        train = self.cfg.train
        return Accumulation(int(train.accumulate_steps), self.batches_per_epoch, bool(train.accumulate_sum))

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: one per ``train.accumulate_steps`` batches."""
        return self.accumulation.optimizer_steps


@dataclass
class StreamEvaluation:
    """One evaluation pass over a stream, summed over the workers."""

    loss: float  # mean cross-entropy
    acc: float  # top-1, a fraction
    count: float  # images seen
    top5: Optional[float] = None  # with train.report_top5_acc (and >= 5 classes)

    def metrics(self, prefix: str) -> Dict[str, float]:
        out = {prefix + "loss": self.loss, prefix + "acc": self.acc, prefix + "count": self.count}
        if self.top5 is not None:
            out[prefix + "top5"] = self.top5
        return out


class EpochRunner:
    """Train and evaluate one epoch at a time on one worker.

    Its public face for recipes (``Recipe.on_fit_end``): ``bare`` (the model),
    ``wc`` (rank, device, config), :meth:`evaluate_stream`, :meth:`all_reduce`,
    and :meth:`log_params`, :meth:`set_tags`, :meth:`log_artifact`, which rank 0
    sends to the driver with the final metrics (:attr:`has_run`: whether they reach a run).
    """

    def __init__(self, wc: WorkerContext, feed: Optional[FeedSender] = None, session: Any = None):
        import ray.train.torch

        self.wc = wc
        self.session = session if session is not None else RayTrainSession()
        cfg = wc.cfg
        self.recipe = build_recipe(cfg)
        wc.batch_factor, wc.passes = self.recipe.batch_size_factor(), self.recipe.passes_per_epoch()
        self.phases = self.recipe.phases()
        self.base_fmt = wc.fmt
        if self.phases[0].resolution:
            wc.spec = dataclasses.replace(wc.spec, size=self.phases[0].resolution)
        model = build_model(cfg, wc.spec)
        if wc.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = ray.train.torch.prepare_model(model, move_to_device=wc.device)
        self.bare = ckpt.unwrap(self.model)
        self.phase_index = -1
        self.start_phase(0)
        self.scaler = torch.amp.GradScaler("cuda", enabled=wc.amp)
        self.train_shard = self.session.get_dataset_shard("train")
        self.test_shard = self.session.get_dataset_shard("test")
        self.history: List[Dict[str, float]] = []
        self.start_epoch = 0
        self.feed = feed
        self._shards: Dict[str, Any] = {}
        # What rank 0 sends the driver after the final checkpoint (params, tags, artifacts).
        self.outbox: List[tuple] = []

    # -- checkpoints ---------------------------------------------------------------
    def state(self, epoch: int) -> Dict[str, Any]:
        return {
            "model": self.bare.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "rng": ckpt.rng_state(),
            "config": OmegaConf.to_container(self.wc.cfg),
            "history": self.history,
            "phase": self.phase_index,
            "recipe": self.recipe.state_dict(),  # early stopping, MIMO's gradient-skip rule, ...
        }

    def restore(self, state: Dict[str, Any], source: str) -> None:
        ckpt.load_model_state(self.model, state["model"], source)
        self.start_phase(int(state.get("phase", 0)))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        self.history = list(state.get("history", []))
        self.start_epoch = int(state["epoch"])
        if "recipe" in state:
            self.recipe.load_state_dict(state["recipe"])
        elif state.get("early_stopping"):  # a checkpoint of raysys before recipe state
            self.recipe.load_state_dict({"early_stopping": state["early_stopping"]})

    # -- phases (raysys/train/phases.py) ----------------------------------------------------
    def start_phase(self, index: int) -> None:
        """Enter phase ``index``: its input side, the recipe's model changes, a fresh optimizer and schedule."""
        if index == self.phase_index:
            return
        phase = self.phases[index]
        self.phase_index = index
        if phase.resolution:
            self.wc.fmt = dataclasses.replace(self.base_fmt, resize=phase.resolution)
        self.recipe.on_phase_start(self.bare, phase, self.wc.fmt.output_size)
        cfg = run_phases.phase_config(self.wc.cfg, phase)
        groups = self.recipe.param_groups(self.bare)
        self.optimizer = build_optimizer(cfg, groups, self.recipe.optimizer_weight_decay())
        self.scheduler = build_scheduler(cfg, self.optimizer, self.wc.steps_per_epoch)

    def phase_metrics(self, epoch: int) -> Dict[str, float]:
        """Start a new phase at ``epoch`` if one begins there; its start-of-phase evaluation, if any."""
        if len(self.phases) == 1:
            return {}
        index, _ = run_phases.locate(self.phases, epoch)
        metrics: Dict[str, float] = {"phase": index, "resolution": self.wc.fmt.output_size}
        if index == self.phase_index:
            return metrics
        self.start_phase(index)
        metrics["resolution"] = self.wc.fmt.output_size
        prefix = self.phases[index].eval_on_start
        if prefix:
            previous = self.phases[index - 1].name
            metrics.update({f"{prefix}_{k}": v for k, v in self.evaluate(epoch).items()})
            if self.history:  # none when the previous phase has 0 epochs
                metrics[f"{previous}_test_acc"] = self.history[-1]["test_acc"]
                metrics[f"{prefix}_diff"] = metrics[f"{prefix}_test_acc"] - metrics[f"{previous}_test_acc"]
        return metrics

    # -- one epoch --------------------------------------------------------------------
    def _collator(self, epoch: int, augment: str) -> BatchCollator:
        return BatchCollator(self.wc.fmt, augment, self.wc.cfg.seed, epoch, self.wc.rank)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        if self.wc.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.wc.amp else nullcontext()

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        wc, cfg = self.wc, self.wc.cfg
        self.model.train()
        self.recipe.on_train_epoch_start(self.bare, epoch)
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 101 + wc.rank)
        batches = itertools.chain.from_iterable(
            iter_batches(
                self.train_shard, self._collator(epoch * wc.passes + p, cfg.train.augment), wc.per_worker_batch,
                shuffle_rows=wc.shuffle_rows, shuffle_seed=cfg.seed * 1_000_003 + (epoch * wc.passes + p) * 1009 + wc.rank,
                pin_memory=wc.cuda, device=wc.device,
            )
            for p in range(wc.passes)
        )
        loss_sum = torch.zeros((), dtype=torch.float64, device=wc.device)
        correct = torch.zeros((), dtype=torch.float64, device=wc.device)
        extra_sums: Dict[str, torch.Tensor] = {}
        seen = skipped = nonfinite = 0
        group_finite = True
        accumulation = wc.accumulation
        ticker = ProgressTicker(self.feed if wc.progress else None, epoch=epoch + 1, batches=wc.batches_per_epoch,
                                world_size=wc.world_size, lr=lambda: self.optimizer.param_groups[0]["lr"])
        _sync(wc.device)
        start = time.perf_counter()
        for step, batch in enumerate(batches):
            images, labels = self._to_device(batch["image"]), batch["label"]
            inputs, targets = self.recipe.on_train_batch_start(images, labels, generator)
            # DDP skips the gradient all-reduce inside a group (no_sync must cover the forward too).
            with accumulation.sync(self.model, step):
                with self._autocast():
                    outputs = self.model(inputs)
                    loss, extras = self.recipe.loss(self.bare, outputs, targets)
                finite = bool(torch.isfinite(loss.detach()).item())
                if not finite:
                    self.recipe.on_nonfinite_loss(loss.item(), epoch, step)  # raises unless the recipe skips the step
                if accumulation.opens_group(step):
                    self.optimizer.zero_grad(set_to_none=True)
                    group_finite = True
                group_finite = group_finite and finite
                self.scaler.scale(loss * accumulation.loss_scale(step)).backward()
            if accumulation.closes_group(step):
                self.scaler.unscale_(self.optimizer)
                max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
                # A rank whose loss was non-finite skips the step; so do the others, whose all-reduced
                # gradients (and so grad_norm) it made non-finite: every rank takes the same decision.
                if self.recipe.on_before_optimizer_step(grad_norm) and group_finite and bool(torch.isfinite(grad_norm)):
                    self.scaler.step(self.optimizer)
                else:
                    skipped += 1
                self.scaler.update()
                self.scheduler.step()
            if not finite:  # a skipped batch: out of the epoch's loss and accuracy
                nonfinite += 1
                continue
            n = labels.shape[0]
            seen += n
            loss_sum += loss.detach().double() * n
            correct += (outputs.detach().argmax(1) == labels).sum()
            for key, value in extras.items():
                extra_sums[key] = extra_sums.get(key, 0) + value.detach().double() * n
            ticker.tick(step + 1, seen, loss_sum, correct)
        _sync(wc.device)
        elapsed = time.perf_counter() - start
        keys = sorted(extra_sums)
        totals = all_reduce([float(loss_sum), float(correct), seen, skipped, nonfinite, *[float(extra_sums[k]) for k in keys]], wc.device)
        images_total = max(totals[2], 1)
        metrics = {
            "train_loss": totals[0] / images_total,
            "train_acc": totals[1] / images_total,
            "images_per_sec": totals[2] / max(elapsed, 1e-9),
            "epoch_time": elapsed,
            "lr": self.optimizer.param_groups[0]["lr"],
            # Every rank takes the same step decision on the all-reduced gradients: count it once.
            "skipped_steps": totals[3] / wc.world_size,
        }
        if totals[4]:
            metrics["nonfinite_losses"] = totals[4]  # batches whose loss the recipe let through (on_nonfinite_loss)
        for key, total in zip(keys, totals[5:]):
            metrics[f"train_{key}"] = total / images_total
        return metrics

    def evaluate(self, epoch: int) -> Dict[str, float]:
        """The epoch's evaluation: one pass over the test stream per recipe eval mode (``test_*``, ``test_<mode>_*``)."""
        model = self.bare
        metrics: Dict[str, float] = {}
        for mode in self.recipe.eval_modes(model):
            self.recipe.set_eval_mode(model, mode)
            metrics.update(self.evaluate_stream("test", epoch=epoch).metrics(f"test_{mode}_" if mode else "test_"))
        self.recipe.set_eval_mode(model, "")
        return metrics

    @torch.no_grad()
    def evaluate_stream(self, stream: str = "test", *, epoch: int = 0,
                        per_batch: Optional[Callable[[Dict[str, torch.Tensor], torch.Tensor], None]] = None) -> StreamEvaluation:
        """One pass of the model as it is (eval mode, no augmentation) over this worker's share of ``stream``.

        Every worker must call it (the sums are all-reduced). ``per_batch(batch, outputs)`` sees
        each batch (``image``, ``label``, ``index`` on the device) and the model's outputs, e.g. to
        sum per-group counts, which the caller then sums over the workers with :meth:`all_reduce`.
        """
        wc, cfg = self.wc, self.wc.cfg
        # The bare model: DDP's forward would sync buffers, a collective that
        # deadlocks when workers hold different numbers of test batches.
        model = self.bare
        self.recipe.on_evaluation_start(model)  # model.eval(), unless the recipe evaluates otherwise
        batch_size = cfg.train.eval_batch_size or wc.per_worker_batch
        top5 = cfg.train.report_top5_acc and wc.spec.num_classes >= 5
        loss_sum = correct = correct5 = seen = 0.0
        for batch in iter_batches(self._shard(stream), self._collator(epoch, "none"), batch_size, pin_memory=wc.cuda, device=wc.device):
            images, labels = self._to_device(batch["image"]), batch["label"]
            with self._autocast():
                outputs = model(images)
            loss_sum += float(torch.nn.functional.cross_entropy(outputs.float(), labels, reduction="sum"))
            correct += float((outputs.argmax(1) == labels).sum())
            if top5:
                correct5 += float((outputs.topk(5, dim=1).indices == labels[:, None]).any(1).sum())
            seen += labels.shape[0]
            if per_batch is not None:
                per_batch(batch, outputs)
        loss_sum, correct, correct5, seen = all_reduce([loss_sum, correct, correct5, seen], wc.device)
        return StreamEvaluation(loss_sum / max(seen, 1), correct / max(seen, 1), seen,
                                correct5 / max(seen, 1) if top5 else None)

    def _shard(self, stream: str):
        if stream == "test":
            return self.test_shard
        if stream not in self._shards:
            self._shards[stream] = self.session.get_dataset_shard(stream)
        return self._shards[stream]

    def all_reduce(self, values: List[float]) -> List[float]:
        """Sum ``values`` over the workers (every worker must call it with as many values)."""
        return all_reduce(values, self.wc.device)

    # -- what a recipe logs at the end (rank 0 -> driver -> MLflow) --------------------------------
    @property
    def has_run(self) -> bool:
        """Whether this worker's :meth:`log_params`, :meth:`set_tags`, :meth:`log_artifact` reach an MLflow run."""
        return self.wc.rank == 0 and self.wc.tracked and self.feed is not None and self.feed.queue is not None

    def log_params(self, params: Dict[str, Any]) -> None:
        if self.has_run:
            self.outbox.append(("params", dict(params)))

    def set_tags(self, tags: Dict[str, Any]) -> None:
        if self.has_run:
            self.outbox.append(("tags", dict(tags)))

    def log_artifact(self, artifact_file: str, data: bytes) -> None:
        """A file of the run's artifacts: ``artifact_file`` is its path inside them (e.g. ``eval/x.csv``)."""
        if self.has_run:
            self.outbox.append(("artifact", str(artifact_file), bytes(data)))


def train_loop_per_worker(loop_config: Dict[str, Any], session: Any = None) -> None:
    """Ray Train entry point: resume if a checkpoint exists, then run the epochs.

    ``session`` (default: Ray Train's, :class:`RayTrainSession`) gives the checkpoint and
    datasets and takes the reports: a pack passes each of its runs' own.
    """
    from ray.train import Checkpoint

    wc = WorkerContext(loop_config)
    cfg = wc.cfg
    seed_everything(cfg.seed, wc.rank, cfg.deterministic)
    threads = cfg.scaling.torch_threads or cfg.scaling.cpus_per_worker
    torch.set_num_threads(max(1, int(threads)))
    feed = FeedSender(wc.feed) if wc.rank == 0 else None
    runner = EpochRunner(wc, feed, session)
    latest = runner.session.get_checkpoint()
    if latest is not None:
        with latest.as_directory() as directory:
            runner.restore(ckpt.load_file(Path(directory)), source=f"{latest.path}")
    else:
        runner.recipe.on_fit_start(runner)  # a fresh run: e.g. continue another program's checkpoint
    if feed:
        feed.epochs(runner.history)  # restored from a checkpoint: the driver logs what MLflow lacks
    total_epochs = run_phases.total_epochs(runner.phases)
    for epoch in range(runner.start_epoch, total_epochs):
        if runner.recipe.should_stop:  # resumed from the checkpoint of an early-stopped run
            break
        phase_metrics = runner.phase_metrics(epoch)
        metrics = {"epoch": epoch + 1, **phase_metrics, **runner.train_epoch(epoch), **runner.evaluate(epoch)}
        metrics.update(runner.recipe.on_train_epoch_end(runner.bare, epoch))
        if len(runner.phases) > 1 and epoch + 1 == total_epochs:
            metrics["final_test_acc"] = metrics["test_acc"]
        generic = dict(metrics)  # the console's epoch line reads the loop's names and units
        metrics = runner.recipe.named_metrics(metrics)
        runner.recipe.on_validation_end(runner.bare, metrics)
        runner.history.append(metrics)
        with tempfile.TemporaryDirectory() as directory:
            checkpoint = None
            if wc.rank == 0 and ((epoch + 1) % cfg.checkpoint.every_epochs == 0 or run_phases.ends_phase(runner.phases, epoch)):
                ckpt.save_atomic(runner.state(epoch + 1), Path(directory) / ckpt.STATE_FILE)
                checkpoint = Checkpoint.from_directory(directory)
            runner.session.report(metrics, checkpoint=checkpoint)
        if feed and checkpoint is not None:
            # Only checkpointed epochs reach MLflow: a re-done epoch is never logged twice.
            feed.epochs(runner.history)
        if feed and wc.progress:
            feed.shown(runner.recipe.shown_metrics(generic))
        if runner.recipe.should_stop:
            break
    _finish_run(runner, feed)


def _finish_run(runner: EpochRunner, feed: Optional[FeedSender]) -> None:
    """After the epochs: the recipe's end of training (best weights reloaded), then its final metrics.

    The final checkpoint first; then rank 0 sends what the recipe logged (params, tags,
    artifacts) and the final metrics to the driver.
    """
    from ray.train import Checkpoint

    runner.recipe.on_train_end(runner.bare)
    final = runner.recipe.on_fit_end(runner, runner.history)
    if not final:
        if feed:
            feed.send(runner.outbox)
        return
    step = int(runner.history[-1]["epoch"]) if runner.history else 0
    with tempfile.TemporaryDirectory() as directory:
        # The final checkpoint holds the evaluated (best) weights, and the run's result gets these metrics.
        checkpoint = None
        if runner.wc.rank == 0:
            ckpt.save_atomic(runner.state(step), Path(directory) / ckpt.STATE_FILE)
            checkpoint = Checkpoint.from_directory(directory)
        runner.session.report({"epoch": step, **final}, checkpoint=checkpoint)
    if feed:
        feed.send(runner.outbox)
        feed.final(step, final)
