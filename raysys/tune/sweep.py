"""Sweeps: a Ray Tune Tuner over a driver function that trains one trial with a TorchTrainer.

The sweep is an MLflow parent run; each trial is a child run made by the same
``run_training`` as ``raysys train``, so names, params and metrics match. A
(config, seed) whose run already FINISHED is not trained again; a failed or
interrupted one is re-run and resumes from its Ray Train checkpoint. With
``seeds_per_trial: k`` a trial trains k seeds of one row one after another
(:mod:`raysys.tune.pack`); each seed is still its own run.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf

from raysys.config.loader import from_container, load_config, parse_override
from raysys.console import note, phase, rayout
from raysys.driver import launch, record
from raysys.driver.failure import reason_from_text, root_cause
from raysys.errors import ConfigError, TrainingError
from raysys.track import identity, runs
from raysys.track.uri import check_reachable
from raysys.train.locations import pin_locations
from raysys.train.devices import gpus_needed
from raysys.train.session import ensure_ray, wants_gpu
from raysys.train.storage import check_shared_storage
from raysys.tune.pack import pack_driver, pack_param, packs, seed_outcome
from raysys.tune.space import Space, Trial, labelled_run_name, reseeded, row_slug, unlabelled_run_name
from raysys.tune.table import make_table, metric_value, tune_callback, tune_output_to_log

SWEEP_TAG = "raysys.sweep"
ROW_TAG = "raysys.row"  # a trial run's row label in its tune space
# What a trial's driver reserves. Not CPU: Ray Data's tasks need one whole CPU outside the
# trainers' placement groups, and drivers holding 0.01 CPU each leave only 0.98 of it.
TRIAL_DRIVER_RESOURCES = {"memory": 256 * 1024**2}


@dataclass
class TrialOutcome:
    trial: Trial
    run_name: str
    status: str  # "finished earlier", "finished", "failed"
    reason: str = ""
    test_acc: Optional[float] = None
    run_id: str = ""


@dataclass
class SweepSummary:
    name: str
    parent_run_id: str
    tracking_uri: str
    started: int
    skipped: int
    outcomes: List[TrialOutcome] = field(default_factory=list)

    @property
    def failed(self) -> List[TrialOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def as_dict(self) -> Dict[str, Any]:
        return {
            "sweep": self.name, "parent_run_id": self.parent_run_id, "tracking_uri": self.tracking_uri,
            "trials": len(self.outcomes), "started": self.started, "skipped": self.skipped,
            "failed": [{"trial": o.run_name, "reason": o.reason} for o in self.failed],
        }


def trial_configs(space: Space, experiment: str) -> List[DictConfig]:
    """Every trial's Config, all logging to the sweep's experiment (in ``space.trials()`` order).

    A row's Config is loaded once (load_space keeps it) and copied per seed: loading
    each of thousands of trials (~0.2 s each) would take many minutes.
    """
    configs = []
    for row in space.rows:
        first = row.config if row.config is not None else load_config(row.preset, [*row.overrides, f"seed={space.seeds[0]}"])
        first = copy.deepcopy(first)
        OmegaConf.update(first, "tracking.experiment", parse_override(f"tracking.experiment={experiment}")[1])
        pin_locations(first)  # trials run in other working directories
        configs += [_labelled(reseeded(first, seed), row.label) for seed in space.seeds]
    uris = {cfg.tracking.uri for cfg in configs}
    if len(uris) > 1:
        raise ConfigError(f"sweep {space.name!r}: trials log to different tracking.uri values {sorted(uris)}")
    return configs


def _labelled(cfg: DictConfig, label: str) -> DictConfig:
    cfg.run_name = labelled_run_name(label, str(cfg.preset), str(cfg.run_name))
    return cfg


def find_trial(uri: str, exp_id: str, trial: Trial, cfg: DictConfig) -> record.Lookup:
    """The trial's run: by its name, else a FINISHED run under the name it had before names said the row."""
    found = record.lookup(uri, exp_id, cfg)
    former = unlabelled_run_name(trial.label, trial.preset, str(cfg.run_name))
    if found.finished or former == cfg.run_name:
        return found
    earlier = record.lookup(uri, exp_id, _renamed(cfg, former))
    return earlier if earlier.finished else found


@dataclass(frozen=True)
class PlannedTrial:
    """What ``sweep --dry-run`` shows of a trial: its run name and what a sweep would do with it."""

    trial: Trial
    run_name: str
    state: str  # "finished" (skipped), "resumes" (an unfinished run of it exists), "new"
    run_id: str = ""


def plan_trials(space: Space) -> List[PlannedTrial]:
    """Each trial's run name and whether it already FINISHED, read from MLflow; starts no Ray.

    A store or experiment that does not exist yet is not created: every trial is new.
    """
    experiment = space.experiment_name()
    configs = trial_configs(space, experiment)
    uri = configs[0].tracking.uri
    exp_id = None
    if not (uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()):
        check_reachable(uri)
        found_exp = runs.client(uri).get_experiment_by_name(experiment)
        exp_id = found_exp.experiment_id if found_exp is not None else None
    planned = []
    for trial, cfg in zip(space.trials(), configs):
        found = find_trial(uri, exp_id, trial, cfg) if exp_id is not None else record.Lookup(None)
        state = "finished" if found.finished else "resumes" if found.run is not None else "new"
        name = found.run.data.tags.get(runs.RUN_NAME_TAG, cfg.run_name) if found.finished else cfg.run_name
        planned.append(PlannedTrial(trial, name, state, found.run.info.run_id if found.run is not None else ""))
    return planned


def _renamed(cfg: DictConfig, name: str) -> DictConfig:
    out = copy.deepcopy(cfg)
    out.run_name = name
    return out


def default_concurrency(configs: List[DictConfig]) -> int:
    """How many trials' worker groups the cluster holds at once, keeping one CPU for Ray Data.

    Counted on the cluster as it is now; an autoscaling cluster's maximum size
    (from its cluster config, when Ray knows it) counts instead when larger.
    """
    import ray

    resources = dict(ray.cluster_resources())
    for name, most in (_autoscaler_max_resources() or {}).items():
        resources[name] = max(resources.get(name, 0), most)
    per_trial = max(c.scaling.num_workers * c.scaling.cpus_per_worker for c in configs)
    holds = math.floor((resources.get("CPU", 1) - 1) / per_trial)
    # GPUs per trial: a fractional scaling.gpus_per_worker lets several trials share one GPU.
    gpu_trials = [gpus_needed(c.scaling.num_workers, c.scaling.gpus_per_worker) for c in configs
                  if wants_gpu(c.scaling.use_gpu)]
    if gpu_trials:
        holds = min(holds, math.floor(resources.get("GPU", 0) / max(gpu_trials) + 1e-9))
    return max(1, holds)


def _autoscaler_max_resources() -> Optional[Dict[str, float]]:
    """The most resources the autoscaler may add (Ray Train checks requests against it too); None without one."""
    try:
        from ray._private.state import state

        return state.get_max_resources_from_cluster_config()
    except Exception:  # a private API: without it the cluster's current size counts
        return None


def running_limit(requested: int, holds: int, sweep: str) -> int:
    """Trials to run at once: ``requested`` (0 = what the cluster holds), at most what it holds.

    A trial's driver needs almost nothing, so Tune would start every requested
    trial at once and their trainers would wait for CPUs, time out and retry.
    Capped, the surplus trials stay PENDING in Tune's queue until one finishes.
    """
    if requested > holds:
        note(f"sweep {sweep}: max_concurrent={requested}, but the cluster holds {holds} trainers at once; "
             f"running {holds} at a time, the other trials queue")
        return holds
    return requested or holds


def check_trial_storage(configs: List[DictConfig]) -> None:
    """The multi-node storage rule of ``raysys train``, for every trial, before any starts.

    Checked once per distinct setting (in trial order): each check asks Ray for its nodes.
    """
    settings = dict.fromkeys(
        (cfg.checkpoint.storage_path, cfg.tracking.uri if cfg.tracking.enabled else "", bool(cfg.checkpoint.shared))
        for cfg in configs
    )
    for storage_path, tracking_uri, shared in settings:
        check_shared_storage(storage_path, tracking_uri, shared)


def _trial_driver(config: Dict[str, Any]) -> None:
    """Tune trainable: train one trial; Tune's callback forwards the epoch reports."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from raysys.driver.training import run_training

    cfg = from_container(config["trial"]["config"])
    run_training(cfg, progress=False, parent_run_id=config["trial"]["parent_run_id"], callbacks=[TuneReportCallback()],
                 tags={ROW_TAG: config["trial"]["row"]})


def _summary_table(outcomes: List[TrialOutcome]) -> tuple[str, str]:
    header = ["label", "seed", "run_name", "status", "test_acc", "reason"]
    rows = [[o.trial.label, o.trial.seed, o.run_name, o.status, "" if o.test_acc is None else f"{o.test_acc:.4f}", o.reason] for o in outcomes]
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return buffer.getvalue(), "\n".join(md) + "\n"


def _final_accuracy(uri: str, run_id: str) -> Optional[float]:
    if not run_id:
        return None
    return metric_value(runs.client(uri).get_run(run_id).data.metrics)


def run_sweep(space: Space, *, max_concurrent: int = 0, overrides: Sequence[str] = ()) -> SweepSummary:
    """Train every trial of ``space`` not yet FINISHED in MLflow; return what happened.

    ``overrides`` are the space overrides of the command line: with the space's name
    they make the sweep's key, so a re-run of the same command reuses its parent run.
    """
    experiment = space.experiment_name()
    configs = trial_configs(space, experiment)
    uri = configs[0].tracking.uri
    check_reachable(uri)
    exp_id = runs.experiment_id(uri, experiment, launch.experiment_description(experiment) or space.description)

    done, pending = [], []
    for trial, cfg in zip(space.trials(), configs):
        found = find_trial(uri, exp_id, trial, cfg)
        (done if found.finished else pending).append((trial, cfg, found.run if found.finished else None))
    key = identity.sweep_key(space.name, overrides)
    _refuse_live_parent(uri, exp_id, key, space.name)
    if pending:  # before the parent run opens: a refused sweep leaves nothing RUNNING
        for cfg in {c.run_name: c for _, c, _ in pending}.values():
            launch.check_before_ray(cfg)
        if space.seeds_per_trial > 1:
            launch.check_packable([c for _, c, _ in pending])
        phase(f"sweep {space.name}: {len(pending)} trials to train ({len(done)} finished); starting Ray")
        ensure_ray(min_cpus=max(c.scaling.num_workers * c.scaling.cpus_per_worker for _, c, _ in pending) + 1)
        rayout.attach(f"{configs[0].checkpoint.storage_path}/sweep-{space.name}")  # beside Tune's trial folders
        check_trial_storage([c for _, c, _ in pending])

    parent_id, reopened = runs.open_run(uri, exp_id, key, {}, name_tag=identity.SWEEP_KEY_TAG, run_name=space.name)
    parent = record.RunRecord.attach(uri, parent_id, f"sweep {space.name!r}", resumed=reopened)
    try:
        with record.terminate_on_sigterm():
            summary = _sweep(space, configs, overrides, done, pending, parent_id, uri, exp_id, max_concurrent)
            _close_parent(summary, parent)
    except (KeyboardInterrupt, SystemExit) as exc:
        terminated = record.sigterm_received(exc)
        why = "terminated (SIGTERM)" if terminated is not None else "interrupted by the user (Ctrl-C)"
        if terminated is None and not isinstance(exc, KeyboardInterrupt):  # a plain sys.exit: a failure
            _close_children(uri, exp_id, parent_id, "the sweep failed")
            parent.close("FAILED", root_cause(exc))
            raise
        _close_children(uri, exp_id, parent_id, why)
        parent.close("KILLED", why)
        if terminated is not None and terminated is not exc:
            raise terminated from None
        raise
    except BaseException as exc:
        _close_children(uri, exp_id, parent_id, "the sweep failed")
        parent.close("FAILED", root_cause(exc))
        raise
    return summary


def _refuse_live_parent(uri: str, exp_id: str, key: str, name: str) -> None:
    """The same sweep RUNNING in a live process: two drivers would train the same trials."""
    existing = runs.find_run(uri, exp_id, key, tag=identity.SWEEP_KEY_TAG)
    if existing is not None and existing.info.status == "RUNNING" and not record.is_dead(existing):
        raise TrainingError(
            f"sweep {name} (run {existing.info.run_id}) is RUNNING in another live process "
            f"({existing.data.tags.get(record.DRIVER_TAG, 'unknown driver')}); wait for it, or stop it and retry"
        )


def _sweep(space: Space, configs, overrides, done, pending, parent_id: str, uri: str, exp_id: str,
           max_concurrent: int) -> "SweepSummary":
    """Describe the parent run, adopt the finished trials, train the pending ones."""
    runs.delete_tag(uri, parent_id, runs.FAILURE_TAG)  # a re-run starts without the last run's verdict
    runs.set_tags(uri, parent_id, {
        SWEEP_TAG: space.name, "raysys.report": space.report, "raysys.trials": len(configs),
        identity.SWEEP_OVERRIDES_TAG: json.dumps(list(overrides)), identity.SWEEP_LAST_STARTED_TAG: record.now_iso(),
        "mlflow.note.content": space.description or f"sweep of tune space {space.name}",
    })
    runs.log_text(uri, parent_id, yaml.safe_dump(space.source, sort_keys=False), "space.yaml")
    for trial, _, run in done:
        runs.set_tags(uri, run.info.run_id, {identity.member_tag(parent_id): run.data.tags.get(identity.member_tag(parent_id), "adopted"),
                                             ROW_TAG: trial.label})
    outcomes = [TrialOutcome(t, r.data.tags.get(runs.RUN_NAME_TAG, c.run_name), "finished earlier", run_id=r.info.run_id,
                             test_acc=metric_value(r.data.metrics)) for t, c, r in done]
    if not pending:
        phase(f"sweep {space.name}: all {len(done)} trials already FINISHED in MLflow; 0 trainings started")
    else:
        table = make_table(done, pending)
        try:
            trained = _tune(space, pending, parent_id, uri, exp_id, max_concurrent or space.max_concurrent, table)
            for outcome in trained:  # what MLflow holds is the verdict, whatever Tune's events said
                if outcome.status == "failed":
                    table.failed(outcome.run_name, outcome.reason)
                else:
                    table.finished(outcome.run_name, outcome.test_acc)
        finally:
            table.close()
        outcomes += trained
    return SweepSummary(space.name, parent_id, uri, started=len(pending), skipped=len(done), outcomes=outcomes)


def _close_children(uri: str, exp_id: str, parent_id: str, why: str) -> None:
    """End the trials' runs that a stopped sweep leaves RUNNING (Tune killed their drivers)."""
    query = f"tags.`{identity.member_tag(parent_id)}` = 'trained' and attributes.status = 'RUNNING'"
    for run in runs.client(uri).search_runs([exp_id], filter_string=query, max_results=1000):
        runs.finish(uri, run.info.run_id, "KILLED", f"{why}: the sweep stopped this trial")


def _tune(space: Space, pending, parent_id: str, uri: str, exp_id: str, max_concurrent: int, table=None) -> List[TrialOutcome]:
    import ray.tune as tune

    configs = [cfg for _, cfg, _ in pending]
    concurrency = running_limit(max_concurrent, default_concurrency(configs), space.name)
    packed = space.seeds_per_trial > 1
    if packed:
        grouped = packs(pending, space.seeds_per_trial)
        phase(f"sweep {space.name}: {len(pending)} seeds in {len(grouped)} trials of up to {space.seeds_per_trial} seeds each")
        trials = [pack_param(group, parent_id, {ROW_TAG: group[0][0].label}) for group in grouped]
    else:
        trials = [{"config": OmegaConf.to_container(cfg), "parent_run_id": parent_id, "name": cfg.run_name, "row": trial.label}
                  for trial, cfg, _ in pending]
    phase(f"sweep {space.name}: up to {concurrency} {'trial' if concurrency == 1 else 'trials'} at once")
    param_space = {"trial": tune.grid_search(trials)}
    tuner = tune.Tuner(
        # The trial only drives its TorchTrainer, which reserves the workers' CPUs;
        # Tune refuses an empty request, so the driver asks for some memory.
        tune.with_resources(pack_driver if packed else _trial_driver, TRIAL_DRIVER_RESOURCES),
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, trial_dirname_creator=lambda t: t.trial_id),
        run_config=tune.RunConfig(
            name=f"sweep-{space.name}", storage_path=configs[0].checkpoint.storage_path,
            failure_config=tune.FailureConfig(max_failures=0), verbose=0,
            callbacks=[tune_callback(table)] if table is not None else None,
        ),
    )
    with tune_output_to_log():
        grid = tuner.fit()
    by_name = {}
    for result in grid:
        reason = reason_from_text(str(result.error), type(result.error).__name__) if result.error else ""
        for name in result.config["trial"].get("names", [result.config["trial"]["name"]]):
            by_name[name] = reason
    outcomes = []
    for trial, cfg, _ in pending:
        reason = by_name.get(cfg.run_name, "the trial did not run")
        found = record.lookup(uri, exp_id, cfg)
        run_id = found.run.info.run_id if found.run else ""
        status = "failed" if reason else "finished"
        if packed:  # a pack's error belongs to the seed it stopped in; seeds before it FINISHED
            status, reason = seed_outcome(found, reason)
        outcomes.append(TrialOutcome(trial, cfg.run_name, status, reason, _final_accuracy(uri, run_id), run_id))
    return outcomes


def row_headlines(outcomes: Sequence[TrialOutcome]) -> Dict[str, float]:
    """Each row's test accuracy over its seeds, as parent-run metrics the runs table can sort by.

    ``row/<label>/test_acc_mean``, ``..._std`` (sample std; 0 for one seed) and ``..._n``.
    """
    by_row: Dict[str, List[float]] = {}
    for outcome in outcomes:
        if outcome.test_acc is not None:
            by_row.setdefault(row_slug(outcome.trial.label), []).append(float(outcome.test_acc))
    metrics = {}
    for slug, values in by_row.items():  # mean and std as the reports aggregate seeds (pipelines/report/engine.py)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        metrics.update({f"row/{slug}/test_acc_mean": statistics.fmean(values), f"row/{slug}/test_acc_std": std,
                        f"row/{slug}/test_acc_n": len(values)})
    return metrics


def _close_parent(summary: SweepSummary, parent: "record.RunRecord") -> None:
    csv_text, md_text = _summary_table(summary.outcomes)
    runs.log_text(summary.tracking_uri, summary.parent_run_id, csv_text, "summary.csv")
    runs.log_text(summary.tracking_uri, summary.parent_run_id, md_text, "summary.md")
    runs.log_metrics(summary.tracking_uri, summary.parent_run_id, {
        "trials": len(summary.outcomes), "trials_started": summary.started,
        "trials_skipped": summary.skipped, "trials_failed": len(summary.failed),
    }, step=0)
    runs.log_metrics(summary.tracking_uri, summary.parent_run_id, row_headlines(summary.outcomes), step=0)
    if summary.failed:
        reasons = "; ".join(f"{o.run_name}: {o.reason}" for o in summary.failed)
        parent.close("FAILED", f"{len(summary.failed)} of {len(summary.outcomes)} trials failed: {reasons}")
    else:
        parent.close("FINISHED")
