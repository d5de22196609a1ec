"""``seeds_per_trial: k``: a row's pending seeds cut into packs of k, one Tune trial per pack.

A pack's trial trains its seeds one after another in one TorchTrainer
(:mod:`raysys.driver.pack`), so Ray Train's fixed cost per ``fit()`` is paid once per k
seeds. Each seed is still its own MLflow run with the name, params and tags an unpacked
trial gives it; what MLflow holds decides each seed's outcome.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from omegaconf import OmegaConf

from raysys.config.loader import from_container


def packs(pending: Sequence[tuple], size: int) -> List[List[tuple]]:
    """``pending`` (trial, cfg, _) cut into packs: each row's trials in their order, ``size`` at a time."""
    by_row: Dict[str, List[tuple]] = {}
    for item in pending:
        by_row.setdefault(item[0].label, []).append(item)
    return [items[start:start + size] for items in by_row.values() for start in range(0, len(items), size)]


def pack_param(pack: Sequence[tuple], parent_run_id: str, tags: Dict[str, Any]) -> Dict[str, Any]:
    """A pack's Tune config: its seeds' configs and run names (``name``: the first seed's, the trial's key)."""
    names = [str(cfg.run_name) for _, cfg, _ in pack]
    return {"configs": [OmegaConf.to_container(cfg) for _, cfg, _ in pack], "names": names, "name": names[0],
            "row": pack[0][0].label, "parent_run_id": parent_run_id, "tags": dict(tags)}


def pack_driver(config: Dict[str, Any]) -> None:
    """Tune trainable: train one pack; Tune's callback forwards each seed's epoch reports."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from raysys.driver.pack import run_pack

    trial = config["trial"]
    run_pack([from_container(c) for c in trial["configs"]], parent_run_id=trial["parent_run_id"],
             callbacks=[TuneReportCallback()], tags=trial["tags"])


def seed_outcome(found, reason: str) -> Tuple[str, str]:
    """(status, reason) of a packed seed: what MLflow holds decides, the pack's error says why not.

    ``found``: the seed's run lookup after the pack; ``reason``: the pack trial's error ('' if none).
    """
    if found.finished:
        return "finished", ""
    if found.run is None:
        return "failed", f"not started: its pack stopped first ({reason or 'no reason given'})"
    return "failed", reason or "its pack ended before this seed finished"
