"""STIR training (``train.recipe=stir``): the original's ``scripts/train.py`` on Ray Train.

- Streams: train on ``data.train_split`` and validate every epoch on
  ``data.test_split`` (the presets set ``val``), both filtered to the
  scenario's train/val scales (``stir.evaluation``); a third stream
  ``final`` reads split ``test`` at all 48 scales (capped by
  ``data.test_limit`` like the validation stream): ``test_*`` count the
  scenario's test scales, ``generalization.csv`` every scale.
- ``stir.shuffle=once``: the train stream reads the original's order (shuffled
  once with seed 42, the same every epoch; ``scenarios.original_train_order``).
- The console's epoch line names the validation pass ``val/loss``, ``val/acc``
  (:meth:`StirRecipe.shown_metrics`).
- Epoch metrics under the original's names and units: ``train_loss``,
  ``train_acc`` (%), ``train_time`` (s), ``val_loss``, ``val_acc`` (%); the
  generic ``test_*`` of the validation pass are renamed, and the generic
  ``epoch_time``, ``images_per_sec``, ``lr`` stay.
- Early stopping (``train.early_stopping_patience=10`` on ``val_acc``) and
  the best weights reloaded come from the default recipe's hooks; then the final metrics
  ``avg_time``, ``best_acc`` (best ``val_acc``), ``test_loss``, ``test_acc``
  (%), the original's params (model, data, evaluation, kernel_size,
  interpolation, lr, seed) and the artifact ``generalization.csv`` (test
  accuracy per object scale as a fraction, all 48 scales as the original's
  ``eval.py --generalization``: model, data, eval, s17..s64).
- Then, on rank 0 with the best weights, the original's ``--equivariance``
  and ``--index-correlation`` outputs as the artifacts ``errors.npz`` and
  ``indices.npz`` where they apply (raysys/families/stir/analysis.py; off with
  ``stir.analysis=false``).
- The final test is the loop's public evaluation (``EpochRunner.evaluate_stream``)
  of the ``final`` stream; metrics, params and artifacts go to the driver through
  the feed (no worker opens MLflow). The recipe keeps no state beyond early stopping.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

import numpy as np
import torch

import torch.nn.functional as F

from raysys.data.shards import load_manifest
from raysys.errors import ConfigError, one_of
from raysys.families.stir import analysis as stir_analysis
from raysys.families.stir.layers.sesn import load_proxy_basis
from raysys.families.stir.models import DISCO, SESN_SIZE, check_kernel_size
from raysys.families.stir.params import original_params
from raysys.families.stir.scenarios import (ALL_SCALES, MAX_SCALE, SHUFFLES, original_train_order, row_filters,
                                            scenario_rows, split_scales)
from raysys.train.recipes.base import RECIPES, Recipe

FINAL_STREAM, FINAL_SPLIT = "final", "test"
# The epoch's evaluation pass reads the val split: its generic names as the console shows them.
SHOWN_NAMES = {"test_loss": "val_loss", "test_acc": "val_acc", "test_count": "val_count"}


def check_options(cfg) -> None:
    """ConfigError for a bad ``stir.shuffle`` or an unreadable ``stir.disco_basis`` (on the driver, before Ray)."""
    if str(cfg.stir.shuffle) not in SHUFFLES:
        raise ConfigError(f"stir.shuffle: {one_of(str(cfg.stir.shuffle), SHUFFLES)}")
    if cfg.stir.disco_basis:
        load_proxy_basis(str(cfg.stir.disco_basis), SESN_SIZE, DISCO["scales"], check_kernel_size(cfg.stir.kernel_size))


def generalization_csv(cfg, correct: np.ndarray, counts: np.ndarray) -> str:
    """One row ``model,data,eval,s17..s64`` of per-scale test accuracy (fraction; empty where a scale has no rows)."""
    params = original_params(cfg)
    header = ["model", "data", "eval"] + [f"s{s}" for s in ALL_SCALES]
    values = [params["model"], params["data"], str(params["evaluation"])]
    values += [f"{c / n:.6f}" if n else "" for c, n in zip(correct, counts)]
    return ",".join(header) + "\n" + ",".join(values) + "\n"


class StirRecipe(Recipe):
    """Cross-entropy training with scenario streams, the original's metric names and a final test."""

    def select_data(self, manifest: dict, selection: Any) -> Any:
        if selection.row_filters:
            raise ConfigError("train.recipe=stir validates on the STIR val split: set data.holdout=0")
        check_options(self.cfg)
        evaluation = int(self.cfg.stir.evaluation)
        data = self.cfg.data
        splits = dict(selection.splits)
        if FINAL_SPLIT in manifest["splits"]:
            splits[FINAL_STREAM] = (FINAL_SPLIT, data.test_limit)

        def rows(split: str, limit: int) -> int:
            n = scenario_rows(manifest, split, evaluation)
            return min(n, limit) if limit > 0 else n

        filters = row_filters(evaluation, splits)
        filters.pop(FINAL_STREAM, None)  # the final test reads all 48 scales (generalization.csv)
        orders = {}
        if str(self.cfg.stir.shuffle) == "once":
            orders["train"] = original_train_order(manifest, evaluation, data.train_split)
        return dataclasses.replace(
            selection, splits=splits,
            train_rows=rows(data.train_split, data.limit), test_rows=rows(data.test_split, data.test_limit),
            row_filters=filters, row_orders=orders,
        )

    def shown_metrics(self, metrics: Dict[str, float]) -> Dict[str, float]:
        """An epoch's metrics for the console's epoch line, in the loop's units: the validation pass as ``val_*``.

        The loop's ``test_*`` of an epoch are the val split's (the test split is read once, at the end)."""
        return {SHOWN_NAMES.get(name, name): value for name, value in metrics.items()}

    def named_metrics(self, metrics: Dict[str, float]) -> Dict[str, float]:
        out = dict(metrics)
        out["train_acc"] = 100.0 * metrics["train_acc"]
        out["train_time"] = metrics["epoch_time"]
        out["val_loss"] = out.pop("test_loss")
        out["val_acc"] = 100.0 * out.pop("test_acc")
        out["val_count"] = out.pop("test_count", 0)
        return out

    def on_fit_end(self, loop: Any, history: List[Dict[str, float]]) -> Dict[str, float]:
        """The final test on the "final" stream with the loop's evaluation, per object scale; rank 0 logs the
        original's params, ``generalization.csv`` and the analysis artifacts through the loop (the driver feed)."""
        if not history:
            return {}
        manifest = load_manifest(self.cfg.data.path)
        per_scale = int(manifest["num_classes"]) * int(manifest["options"]["stir"]["instances"])
        scale_count = len(ALL_SCALES)
        correct = torch.zeros(scale_count, dtype=torch.float64)
        counts = torch.zeros(scale_count, dtype=torch.float64)
        losses = torch.zeros(scale_count, dtype=torch.float64)

        def per_batch(batch: Dict[str, torch.Tensor], outputs: torch.Tensor) -> None:
            labels = batch["label"]
            hits = (outputs.argmax(1) == labels).double().cpu()
            loss = F.cross_entropy(outputs.float(), labels, reduction="none").double().cpu()
            slot = (MAX_SCALE - batch["index"].cpu() // per_scale) - ALL_SCALES[0]  # scale 17 -> slot 0
            correct.index_add_(0, slot, hits)
            counts.index_add_(0, slot, torch.ones_like(hits))
            losses.index_add_(0, slot, loss)

        loop.evaluate_stream(FINAL_STREAM, per_batch=per_batch)
        totals = np.array(loop.all_reduce([*correct.tolist(), *counts.tolist(), *losses.tolist()]))
        correct_np, counts_np, losses_np = totals.reshape(3, scale_count)
        # test_* over the scenario's test scales only, as the original's test loader
        test = np.isin(np.array(ALL_SCALES), split_scales(int(self.cfg.stir.evaluation), FINAL_SPLIT))
        seen = max(float(counts_np[test].sum()), 1.0)
        final = {
            "avg_time": float(np.mean([m["train_time"] for m in history])),
            "best_acc": float(max(m["val_acc"] for m in history)),
            "test_loss": float(losses_np[test].sum() / seen),
            "test_acc": float(100.0 * correct_np[test].sum() / seen),
        }
        if loop.has_run:
            params = original_params(self.cfg)
            loop.log_params(params)
            loop.log_artifact("generalization.csv", generalization_csv(self.cfg, correct_np, counts_np).encode())
            files, error = stir_analysis.analyse_run(self.cfg, params, loop.bare, loop.wc.device)
            for name, data in files.items():
                loop.log_artifact(name, data)
            if error:
                loop.set_tags({stir_analysis.ERROR_TAG: error})
        return final


RECIPES.add("stir", StirRecipe)
