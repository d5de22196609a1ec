"""A sweep trial that trains several seeds of one row in one TorchTrainer (a space's ``seeds_per_trial``).

The driver side of :mod:`raysys.train.pack`. Each seed is its own MLflow run, made as
``run_training`` makes one: the same run name, params, tags, ``config.yaml``, checkpoint
folder (``raysys.checkpoint_dir``) and checkpoint artifact. A seed whose run already
FINISHED is skipped before the pack starts. The driver opens a seed's run when rank 0 says
the seed begins and closes it FINISHED when rank 0 says it ended, so a pack stopped in its
third seed leaves the first two FINISHED and the third FAILED or KILLED, resumable from its
own checkpoints by the next run of the sweep; seeds it never reached have no run yet.
"""
from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from raysys.console import phase, rayout
from raysys.data.jpeg import check_device_available
from raysys.data.stream import build_datasets, materialize_limit_bytes, shuffle_buffer_rows, train_eval_data_config
from raysys.driver import launch
from raysys.driver.record import RunRecord, guarded
from raysys.driver.training import DataPlan, already_finished, close_finished, finished_summary, plan_data, record_config
from raysys.errors import TrainingError
from raysys.track import identity
from raysys.train.feed import EpochLog, PackFeed
from raysys.train.pack import train_pack_per_worker
from raysys.train.phases import total_epochs
from raysys.train.preflight import check_dataset_matches, check_plan
from raysys.train.recipes import build_recipe

# What may differ between the runs of a pack: everything else is one row's config.
PER_RUN_KEYS = ("seed", "run_name")


def _row_config(cfg: DictConfig) -> Dict[str, Any]:
    container = OmegaConf.to_container(cfg)
    for key in PER_RUN_KEYS:
        container.pop(key, None)
    return container


@dataclass
class PackedRun:
    """One seed of a pack: its config, what the store holds of it, and where its checkpoints go."""

    cfg: DictConfig
    target: launch.Target
    train_name: str
    record: Optional[RunRecord] = None
    log: Optional[EpochLog] = None
    summary: Optional[Dict[str, Any]] = None

    @property
    def folder(self) -> str:
        return f"{self.cfg.checkpoint.storage_path}/{self.train_name}"

    @property
    def dataset(self) -> str:
        return f"train_seed{self.cfg.seed}"


def planned_train_name(cfg: DictConfig, found) -> str:
    """The Ray Train name (checkpoint folder) the seed's run has or will get, as ``RunRecord.open`` names it."""
    if found is not None and found.run is not None:
        return found.run.data.tags.get(identity.TRAIN_NAME_TAG) or cfg.run_name
    return identity.train_name(cfg.run_name, identity.fingerprint(cfg))


def run_pack(cfgs: Sequence[DictConfig], *, parent_run_id: str = "", callbacks: Sequence[Any] = (),
             tags: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Train the seeds ``cfgs`` (one row, differing only in seed and run name) in one TorchTrainer.

    Returns each seed's summary, as ``run_training`` returns it, in the order of ``cfgs``.
    """
    if not cfgs:
        return []
    rows = {repr(_row_config(cfg)) for cfg in cfgs}
    if len(rows) > 1:
        raise ValueError("a pack's configs must differ only in " + ", ".join(PER_RUN_KEYS))
    launch.check_packable(cfgs)
    for cfg in cfgs:
        launch.check_before_ray(cfg)
    lead = cfgs[0]
    phase(f"reading the shards at {lead.data.path}")
    plan = plan_data(lead)  # the seed changes no split or row (data.holdout_seed is its own)
    check_plan(lead, plan)
    check_dataset_matches(lead, plan.manifest, plan.fmt.mean)
    total_epochs(build_recipe(lead).phases())  # checks the recipe's phases before Ray starts, as run_training does
    summaries: Dict[str, Dict[str, Any]] = {}
    members: List[PackedRun] = []
    for cfg in cfgs:
        target = launch.find_target(cfg)
        if target.found is not None and target.found.finished:
            summaries[cfg.run_name] = already_finished(cfg, target.found.run)
        else:
            members.append(PackedRun(cfg, target, planned_train_name(cfg, target.found)))
    if members:
        _train(members, plan, parent_run_id, callbacks, dict(tags or {}))
        summaries.update({m.cfg.run_name: m.summary for m in members})
    return [summaries[cfg.run_name] for cfg in cfgs]


def _datasets(members: List[PackedRun], plan: DataPlan) -> Dict[str, Any]:
    """The pack's streams: the evaluation streams once, a train stream per seed (its block order is seeded)."""
    cfg, selection = members[0].cfg, plan.selection
    options = dict(row_filters=selection.row_filters, row_orders=selection.row_orders,
                   materialize_limit=materialize_limit_bytes(cfg.data))
    others = {name: split for name, split in selection.splits.items() if name != "train"}
    datasets = build_datasets(cfg.data.path, plan.manifest, others, plan.fmt, cfg.seed, **options)
    for member in members:
        datasets[member.dataset] = build_datasets(cfg.data.path, plan.manifest, {"train": selection.splits["train"]},
                                                  plan.fmt, member.cfg.seed, **options)["train"]
    return datasets


class _Opener:
    """The driver's ends of a pack's runs: open a seed's run when it begins, close it when it ends."""

    def __init__(self, members: List[PackedRun], guards: ExitStack, *, device: str, parent_run_id: str,
                 tags: Dict[str, Any]):
        self.members, self.guards, self.device = members, guards, device
        self.parent_run_id, self.tags = parent_run_id, tags

    def begin(self, index: int) -> EpochLog:
        member = self.members[index]
        cfg = member.cfg
        if member.summary is not None:  # ended earlier in this fit: a restarted worker group passes through it
            return EpochLog(cfg.tracking.uri, "")
        if member.record is None:
            label = f"training run {cfg.run_name!r}"
            member.record = launch.open_record(cfg, member.target, kind="train", label=label,
                                               tags={**launch.run_tags(cfg, self.device), **self.tags},
                                               parent_run_id=self.parent_run_id)
            self.guards.enter_context(member.record.guard())  # FAILED/KILLED with the reason if the pack stops in it
            record_config(member.record, cfg, member.folder)
            member.log = EpochLog(cfg.tracking.uri, member.record.run_id)
        return member.log

    def end(self, index: int, checkpoint: str, metrics: Dict[str, Any], log: EpochLog) -> None:
        member = self.members[index]
        if member.summary is not None or member.record is None:
            return
        cfg, record = member.cfg, member.record
        log.close()  # raises if MLflow still refuses what the seed logged
        close_finished(record, cfg, Path(checkpoint) if checkpoint else None)
        member.summary = finished_summary(cfg, record.run_id, metrics, checkpoint)


def _train(members: List[PackedRun], plan: DataPlan, parent_run_id: str, callbacks: Sequence[Any],
           tags: Dict[str, Any]) -> None:
    lead = members[0].cfg
    use_gpu = launch.start_ray(lead)
    check_device_available(plan.fmt.jpeg_device, use_gpu)
    device = "cuda" if use_gpu else "cpu"
    name = f"pack-{members[0].train_name}"  # Ray Train's folder of the pack's fit (the seeds keep their own)
    rayout.attach(f"{lead.checkpoint.storage_path}/{name}")
    label = f"pack of {len(members)} seeds ({', '.join(m.cfg.run_name for m in members)})"
    with guarded(None, label), ExitStack() as guards:
        opener = _Opener(members, guards, device=device, parent_run_id=parent_run_id, tags=tags)
        feed = PackFeed(lead.tracking.uri, opener.begin, opener.end)
        try:
            datasets = _datasets(members, plan)
            per_worker_rows = plan.train_rows // lead.scaling.num_workers
            loop_config = {
                "format": dataclasses.asdict(plan.fmt),
                "input": dataclasses.asdict(plan.spec),
                "train_rows": plan.train_rows,
                "shuffle_rows": 0 if "train" in plan.selection.row_orders
                else shuffle_buffer_rows(plan.fmt, per_worker_rows, lead.data.shuffle_buffer),
                "feed": feed.queue,
                "progress": False,
                "runs": [{"config": launch.worker_config(m.cfg), "run_name": m.cfg.run_name, "dataset": m.dataset,
                          "folder": m.folder} for m in members],
            }
            trainer = launch.trainer(
                _pack_worker_entry, loop_config, lead, name=name, use_gpu=use_gpu, datasets=datasets,
                callbacks=callbacks, dataset_config=train_eval_data_config(equal_split=[m.dataset for m in members]),
            )
            phase(f"starting {lead.scaling.num_workers} Ray Train workers ({device}) for {label}")
            feed.follow(trainer.fit)
        finally:
            feed.close()
        unfinished = [m.cfg.run_name for m in members if m.summary is None]
        if unfinished:  # inside the guards: a seed that began and did not end is closed FAILED
            raise TrainingError(f"{label}: the workers returned before seeds {', '.join(unfinished)} ended")


def _pack_worker_entry(loop_config: Dict[str, Any]) -> None:
    # A fresh worker process: rebuilding each run's Config discovers all families first (raysys/families).
    train_pack_per_worker(loop_config)
