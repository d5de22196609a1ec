"""The baseline of ``train-overhead``: a plain PyTorch training script, in process.

Same model (``raysys.models``), optimizer and schedule (raysys's builders, so
the hyperparameters match), batch size, torch threads and memory format as a
raysys config; data from torchvision's ``CIFAR10`` on the same pickle batches,
with the same augmentation, in a DataLoader. Every epoch trains, then evaluates.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import List

import torch
import torch.nn.functional as F

from raysys.bench.timing import now, torch_threads


class PlainTraining:
    """Each call trains ``cfg`` from scratch for ``cfg.train.epochs``; returns the images trained."""

    def __init__(self, cfg, source: Path, *, data_workers: int, threads: int, limit: int = 0):
        self.cfg, self.source, self.data_workers, self.threads = cfg, source, data_workers, threads
        self.limit = limit  # > 0: the first ``limit`` train and test images only (a short warm-up run)
        self.device = torch.device("cuda" if torch.cuda.is_available() and str(cfg.scaling.use_gpu) != "false" else "cpu")
        self.memory = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.amp = self.device.type == "cuda" and cfg.train.amp
        # Per call: the seconds of each epoch's training pass (as raysys's ``epoch_time``).
        self.epoch_times: List[List[float]] = []

    def _loaders(self):
        from raysys.bench import reference
        from raysys.data.formats import get_dataset

        spec = get_dataset(self.cfg.data.name)
        train = reference.cifar10(self.source, True, reference.cifar_transform(spec.mean, spec.std, train=True))
        test = reference.cifar10(self.source, False, reference.cifar_transform(spec.mean, spec.std, train=False))
        if self.limit > 0:
            from torch.utils.data import Subset

            train, test = (Subset(data, range(min(self.limit, len(data)))) for data in (train, test))
        batch = self.cfg.train.batch_size
        return (
            reference.data_loader(train, batch, self.data_workers, shuffle=True),
            reference.data_loader(test, self.cfg.train.eval_batch_size or batch, self.data_workers, shuffle=False),
        )

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()

    def _train_epoch(self, model, loader, optimizer, scheduler, scaler) -> int:
        model.train()
        seen = 0
        for images, labels in loader:
            images = images.to(self.device, memory_format=self.memory, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            with self._autocast():
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            seen += labels.shape[0]
        return seen

    @torch.no_grad()
    def _evaluate(self, model, loader) -> float:
        model.eval()
        correct = 0
        for images, labels in loader:
            with self._autocast():
                outputs = model(images.to(self.device, memory_format=self.memory))
            correct += int((outputs.argmax(1) == labels.to(self.device)).sum())
        return correct / max(1, len(loader.dataset))

    def __call__(self) -> int:
        from raysys.models import InputSpec, build_model
        from raysys.train.optim import build_optimizer, build_scheduler
        from raysys.train.recipes import build_recipe

        cfg = self.cfg
        with torch_threads(self.threads):
            torch.manual_seed(cfg.seed)
            train_loader, test_loader = self._loaders()
            model = build_model(cfg, InputSpec(3, 32, 10)).to(self.device, memory_format=self.memory)
            recipe = build_recipe(cfg)
            optimizer = build_optimizer(cfg, recipe.param_groups(model), recipe.optimizer_weight_decay())
            scheduler = build_scheduler(cfg, optimizer, len(train_loader))
            scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
            seen, epoch_times = 0, []
            self.epoch_times.append(epoch_times)
            for _ in range(cfg.train.epochs):
                begin = now(self.device)
                seen += self._train_epoch(model, train_loader, optimizer, scheduler, scaler)
                epoch_times.append(now(self.device) - begin)
                self._evaluate(model, test_loader)
            return seen
