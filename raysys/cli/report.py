"""``raysys report``: rebuild a paper's table and figures from MLflow."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from raysys.cli.registry import command


@command("report", help="Rebuild a paper's table (Markdown, CSV) and figures from the runs in MLflow.")
def report_command(parser: argparse.ArgumentParser):
    parser.add_argument("name", nargs="?", help="a registered report (omit with --list)")
    parser.add_argument("overrides", nargs="*", help="overrides of the report's tune space, e.g. seeds=[0,1]")
    parser.add_argument("--out", default="reports", help="output folder (default: reports/)")
    parser.add_argument("--space", default=None, help="use this tune space file instead of the report's own")
    parser.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: the space's config)")
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
        report = build_report(args.name, Path(args.out), space_path=Path(args.space) if args.space else None,
                              space_overrides=args.overrides, tracking_uri=args.tracking_uri, sweep_run=args.sweep_run)
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
