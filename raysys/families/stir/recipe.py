"""STIR training (``train.recipe=stir``): the original's ``scripts/train.py`` on Ray Train.

- Streams: train on ``data.train_split`` and validate every epoch on
  ``data.test_split`` (the presets set ``val``), both filtered to the
  scenario's train/val scales (``stir.evaluation``); a third stream
  ``final`` reads split ``test`` at the scenario's test scales (capped by
  ``data.test_limit`` like the validation stream).
- Epoch metrics under the original's names and units: ``train_loss``,
  ``train_acc`` (%), ``train_time`` (s), ``val_loss``, ``val_acc`` (%); the
  generic ``test_*`` of the validation pass are renamed, and the generic
  ``epoch_time``, ``images_per_sec``, ``lr`` stay.
- Early stopping (``train.early_stopping_patience=10`` on ``val_acc``) and
  the best weights reloaded come from the default recipe's hooks; then the final metrics
  ``avg_time``, ``best_acc`` (best ``val_acc``), ``test_loss``, ``test_acc``
  (%), the original's params (model, data, evaluation, kernel_size,
  interpolation, lr, seed) and the artifact ``generalization.csv`` (test
  accuracy per object scale as a fraction, the columns of the original's
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

from raysys.errors import ConfigError
from raysys.families.stir import analysis as stir_analysis
from raysys.families.stir.scenarios import ALL_SCALES, MAX_SCALE, row_filters, scenario_rows
from raysys.train.recipes.base import RECIPES, Recipe

FINAL_STREAM, FINAL_SPLIT = "final", "test"


def original_params(cfg) -> Dict[str, Any]:
    """The original's MLflow params of a run."""
    return {
        "model": str(cfg.model.name).removeprefix("stir_"),
        "data": str(cfg.data.name).removeprefix("stir-"),
        "evaluation": int(cfg.stir.evaluation),
        "kernel_size": int(cfg.stir.kernel_size),
        "interpolation": str(cfg.stir.interpolation),
        "lr": float(cfg.train.lr),
        "seed": int(cfg.seed),
    }


def generalization_csv(cfg, correct: np.ndarray, counts: np.ndarray) -> str:
    """One row ``model,data,eval,s17..s64`` of per-scale test accuracy (fraction; empty where unseen)."""
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
        evaluation = int(self.cfg.stir.evaluation)
        data = self.cfg.data
        splits = dict(selection.splits)
        if FINAL_SPLIT in manifest["splits"]:
            splits[FINAL_STREAM] = (FINAL_SPLIT, data.test_limit)

        def rows(split: str, limit: int) -> int:
            n = scenario_rows(manifest, split, evaluation)
            return min(n, limit) if limit > 0 else n

        return dataclasses.replace(
            selection, splits=splits,
            train_rows=rows(data.train_split, data.limit), test_rows=rows(data.test_split, data.test_limit),
            row_filters=row_filters(evaluation, splits),
        )

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
        from raysys.data.shards import load_manifest

        if not history:
            return {}
        manifest = load_manifest(self.cfg.data.path)
        per_scale = int(manifest["num_classes"]) * int(manifest["options"]["stir"]["instances"])
        correct = torch.zeros(len(ALL_SCALES), dtype=torch.float64)
        counts = torch.zeros(len(ALL_SCALES), dtype=torch.float64)

        def per_batch(batch: Dict[str, torch.Tensor], outputs: torch.Tensor) -> None:
            hits = (outputs.argmax(1) == batch["label"]).double().cpu()
            slot = (MAX_SCALE - batch["index"].cpu() // per_scale) - ALL_SCALES[0]  # scale 17 -> slot 0
            correct.index_add_(0, slot, hits)
            counts.index_add_(0, slot, torch.ones_like(hits))

        result = loop.evaluate_stream(FINAL_STREAM, per_batch=per_batch)
        totals = loop.all_reduce([*correct.tolist(), *counts.tolist()])
        correct_np, counts_np = np.array(totals[:len(ALL_SCALES)]), np.array(totals[len(ALL_SCALES):])
        final = {
            "avg_time": float(np.mean([m["train_time"] for m in history])),
            "best_acc": float(max(m["val_acc"] for m in history)),
            "test_loss": float(result.loss),
            "test_acc": float(100.0 * result.acc),
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
