"""``raysys report``: rebuild a paper's table and figures from MLflow."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from raysys.cli.registry import command, deprecated_flag


@command("report", help="Rebuild a paper's table (Markdown, CSV) and figures from the runs in MLflow.", examples=(
    'raysys report --list',
    'raysys report cifar-resnet-fashion-mnist --out reports/',
    'raysys report cifar-resnet-fashion-mnist tracking.uri=http://mlflow:5000 --sweep-run <parent run id>',
))
def report_command(parser: argparse.ArgumentParser):
    parser.add_argument("name", nargs="?", help="a registered report (omit with --list)")
    parser.add_argument("overrides", nargs="*",
                        help="overrides of the report's tune space, e.g. seeds=[0,1]; tracking.uri=URI: the MLflow store "
                             "(default: the space's config)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports/)")
    parser.add_argument("--space", default=None, help="use this tune space file instead of the report's own")
    deprecated_flag(parser, "--tracking-uri", "tracking.uri", dest="tracking_uri")
    parser.add_argument("--sweep-run", default="", metavar="ID",
                        help="build from this sweep parent run of the space (default: the space's last sweep)")
    parser.add_argument("--list", action="store_true", help="list the registered reports")

    def run(args: argparse.Namespace) -> int:
        import pipelines.report.definitions  # noqa: F401
        from pipelines.report.engine import REPORTS, build_report, summary

        if args.list or not args.name:
            for name, definition in REPORTS.items():
                print(f"{name}\t{definition.title}\t(tune_spaces/{definition.space})")
            return 0
        overrides, uri = split_tracking_uri(args.overrides, args.tracking_uri)
        report = build_report(args.name, Path(args.out), space_path=Path(args.space) if args.space else None,
                              space_overrides=overrides, tracking_uri=uri, sweep_run=args.sweep_run)
        if report.sweep is not None:
            print(f"runs: {report.sweep.describe()}")
        for label, seeds in report.missing.items():
            print(f"missing: {label}: seeds {seeds}")
        for item in report.stale:
            replaced = f" (replaced by run {item['replaced_by']})" if item["replaced_by"] else ""
            print(f"stale: {item['row']}: seed {item['seed']}: run {item['run_id']}{replaced}")
        unverified = report.unverified
        if unverified:
            print(f"unverified: {len(unverified)} runs recorded before config fingerprints, matched by name "
                  "(listed in the summary)")
        print(json.dumps(summary(report, Path(args.out))))
        return 0

    return run


def split_tracking_uri(overrides, flag_value: str = ""):
    """``tracking.uri=URI`` out of the overrides (it names the store to read, not a trial setting); the flag's value otherwise."""
    rest = [item for item in overrides if not item.startswith("tracking.uri=")]
    given = [item.split("=", 1)[1] for item in overrides if item.startswith("tracking.uri=")]
    return rest, (given[-1] if given else flag_value)
