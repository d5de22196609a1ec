"""``raysys sweep``: run a tune space with Ray Tune."""
from __future__ import annotations

import argparse
import json

from raysys.cli.registry import command


@command("sweep", help="Run a tune space (seed and hyperparameter grid) with Ray Tune; idempotent against MLflow.")
def sweep_command(parser: argparse.ArgumentParser):
    parser.add_argument("space", help="a tune space YAML, e.g. tune_spaces/cifar-resnet-fashion-mnist.yaml")
    parser.add_argument("overrides", nargs="*", help="space fields (seeds=[0,1] max_concurrent=4) or config keys for every trial (train.epochs=1)")
    parser.add_argument("--dry-run", action="store_true", help="list the trials and whether each already finished; train nothing")

    def run(args: argparse.Namespace) -> int:
        from raysys.tune.space import load_space

        space = load_space(args.space, args.overrides)
        if args.dry_run:
            for trial in space.trials():
                print(f"{trial.label}\tseed={trial.seed}\t{trial.preset} {' '.join(trial.overrides)}")
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
