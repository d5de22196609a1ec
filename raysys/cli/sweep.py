"""``raysys sweep``: run a tune space with Ray Tune."""
from __future__ import annotations

import argparse
import json

from raysys.cli.registry import command


@command("sweep", help="Run a tune space (seed and hyperparameter grid) with Ray Tune; idempotent against MLflow.", examples=(
    'raysys sweep tune_spaces/cifar-resnet-fashion-mnist.yaml --dry-run',
    'raysys sweep tune_spaces/cifar-resnet-fashion-mnist.yaml seeds=0-4 max_concurrent=2 train.epochs=1',
    'raysys sweep tune_spaces/cifar-resnet-fashion-mnist.yaml tracking.uri=http://mlflow:5000',
))
def sweep_command(parser: argparse.ArgumentParser):
    parser.add_argument("space", help="a tune space YAML, e.g. tune_spaces/cifar-resnet-fashion-mnist.yaml")
    parser.add_argument("overrides", nargs="*", help="space fields (seeds=[0,1] max_concurrent=4) or config keys for every trial (train.epochs=1)")
    parser.add_argument("--dry-run", action="store_true", help="list the trials and whether each already finished; train nothing")

    def run(args: argparse.Namespace) -> int:
        from raysys.console import phase
        from raysys.tune.space import load_space

        phase(f"sweep {args.space}: loading the tune space")
        space = load_space(args.space, args.overrides)
        if args.dry_run:
            from raysys.tune.sweep import plan_trials

            planned = plan_trials(space)
            for p in planned:
                print(f"{p.state:<8}\t{p.run_name}\t{p.trial.label}\tseed={p.trial.seed}\t{p.trial.preset} {' '.join(p.trial.overrides)}".rstrip())
            counts = {state: sum(p.state == state for p in planned) for state in ("finished", "resumes", "new")}
            print(f"sweep {space.name}: {len(planned)} trials: {counts['finished']} finished (skipped), "
                  f"{counts['resumes']} to resume, {counts['new']} new")
            return 0
        from raysys.tune.sweep import run_sweep

        summary = run_sweep(space, overrides=args.overrides)
        if summary.started == 0:
            print(f"sweep {space.name}: all {summary.skipped} trials already finished; started 0 trainings")
        for outcome in summary.failed:
            print(f"failed: {outcome.run_name}: {outcome.reason}")
        print(json.dumps(summary.as_dict()))
        return 1 if summary.failed else 0

    return run
