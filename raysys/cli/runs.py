"""``raysys runs repair``: mend a store that faults left behind."""
from __future__ import annotations

import argparse
import json

from raysys.cli.registry import command, deprecated_flag


@command("runs", help="Look after the MLflow store: `runs repair` closes dead RUNNING runs and restores missing params.", examples=(
    'raysys runs repair --dry-run',
    'raysys runs repair tracking.uri=http://mlflow:5000 --experiment cifar-resnet',
))
def runs_command(parser: argparse.ArgumentParser):
    parser.add_argument("action", choices=["repair"], help="repair: close runs no live process holds; restore params/config.yaml")
    parser.add_argument("overrides", nargs="*",
                        help="tracking.uri=URI (default: the local ./mlflow.db); checkpoint.storage_path=DIR: Ray Train "
                             "storage of runs recorded before raysys.checkpoint_dir (default ./runs)")
    parser.add_argument("--experiment", action="append", default=[], help="only this experiment (repeatable)")
    deprecated_flag(parser, "--storage", "checkpoint.storage_path", dest="storage", metavar="DIR")
    parser.add_argument("--dry-run", action="store_true", help="say what would change; change nothing")

    def run(args: argparse.Namespace) -> int:
        from raysys.driver.repair import repair
        from raysys.track.uri import check_reachable, resolve_tracking_uri

        from raysys.config.loader import parse_override
        from raysys.errors import ConfigError

        settings = dict(parse_override(item) for item in args.overrides)
        unknown = sorted(set(settings) - {"tracking.uri", "checkpoint.storage_path"})
        if unknown:
            raise ConfigError(f"runs repair takes only tracking.uri=... and checkpoint.storage_path=..., not {unknown[0]!r}")
        uri = resolve_tracking_uri(str(settings.get("tracking.uri", "")))
        check_reachable(uri)
        report = repair(uri, args.experiment, storage_path=str(settings.get("checkpoint.storage_path", args.storage)), dry_run=args.dry_run)
        for item in report.repairs:
            print(f"{item.run_name} ({item.run_id}): {item.action}" + (f": {item.detail}" if item.detail else ""))
        print(json.dumps(report.as_dict()))
        return 0

    return run
