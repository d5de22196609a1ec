"""``python -m raysys stir``: generate STIR datasets, fetch the emoji glyphs, shard an original npz file, export runs."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from raysys.cli.registry import command, deprecated_flag, examples_epilog


def _print_summary(manifest: dict, out: str) -> None:
    counts = {name: split["count"] for name, split in manifest["splits"].items()}
    print(json.dumps({"dataset": manifest["dataset"], "out": out, "npz": manifest["options"].get("npz"),
                      "classes": manifest["num_classes"], "splits": counts}))


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for <name>.npz, the shards and manifest.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing STIR folder at --out")
    parser.add_argument("--rows-per-shard", type=int, default=None)


@command("stir", help="STIR (scale equivariance): generate a dataset, shard an original npz file, export runs.", examples=(
    'raysys stir generate emoji --out data/stir/emoji',
    'raysys stir export --data emoji --out clean.csv tracking.uri=sqlite:///mlflow.db',
    'raysys stir analyze <run id> data.path=data/stir/emoji',
))
def stir_command(parser: argparse.ArgumentParser):
    sub = parser.add_subparsers(dest="stir_command", metavar="<generate|fetch-glyphs|shards|export|analyze>")
    sub.required = True

    gen = sub.add_parser("generate", formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog=examples_epilog(('raysys stir generate emoji --out data/stir/emoji', 'raysys stir generate mnist --source data/mnist-idx --out data/stir/mnist', 'raysys stir generate emoji --instances 4 --out /tmp/stir-emoji-small',)), help="generate STIR emoji, mnist, trafficsign or aerial")
    gen.add_argument("name", help="emoji, mnist, trafficsign or aerial")
    gen.add_argument("--source", default=None,
                     help="original files: IDX folder (mnist), MTSD folder (trafficsign), DOTA folder (aerial); "
                          "emoji: optional Font Awesome SVG folder or 5.15.3 .tgz (default: the cached npm tarball)")
    gen.add_argument("--glyphs", default=None, choices=("fontawesome5", "fontawesome6"),
                     help="emoji only: fontawesome5 (default: Font Awesome Free 5.15.3, the original's) or "
                          "fontawesome6 (the fontawesomefree package's redrawn glyphs)")
    gen.add_argument("--seed", type=int, default=42, help="random positions and selection (default 42, the original's)")
    gen.add_argument("--instances", type=int, default=None,
                     help="instances per class and split (default: the original's; smaller for quick tests)")
    _add_output_arguments(gen)
    gen.set_defaults(stir_run=_run_generate)

    glyphs = sub.add_parser("fetch-glyphs", formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog=examples_epilog(('raysys stir fetch-glyphs', 'raysys stir fetch-glyphs --no-npm --registry https://registry.npmjs.org',)), help="fetch and cache Font Awesome Free 5.15.3 (npm) for STIR emoji")
    glyphs.add_argument("--registry", default="https://registry.npmjs.org", help="npm registry URL")
    glyphs.add_argument("--no-npm", action="store_true", help="download with Python even when npm is on PATH")
    glyphs.set_defaults(stir_run=_run_fetch_glyphs)

    shards = sub.add_parser("shards", formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog=examples_epilog(('raysys stir shards --source original/emoji.npz --out data/stir/emoji', 'raysys stir shards --source original/ --name mnist --out data/stir/mnist',)), help="write shards for an existing original-layout STIR npz file")
    shards.add_argument("--source", required=True, help="the .npz file (or a folder holding <name>.npz)")
    shards.add_argument("--name", default=None, help="emoji, mnist, trafficsign or aerial (default: the file name)")
    _add_output_arguments(shards)
    shards.set_defaults(stir_run=_run_shards)

    export = sub.add_parser("export", formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog=examples_epilog(('raysys stir export --out clean.csv tracking.uri=sqlite:///mlflow.db', 'raysys stir export --data emoji --out clean.csv --space-out stir-emoji-kept.yaml', 'raysys stir export --all --out all-runs.csv',)), help="write FINISHED STIR runs as the original's clean.csv (lr-selected)")
    export.add_argument("--out", required=True, help="the CSV file to write, e.g. clean.csv")
    export.add_argument("--experiment", default="stir", help="MLflow experiment (default: stir, the presets' paper)")
    export.add_argument("overrides", nargs="*", help="tracking.uri=URI: the MLflow store (default: sqlite ./mlflow.db)")
    deprecated_flag(export, "--tracking-uri", "tracking.uri", dest="tracking_uri")
    export.add_argument("--data", default="", help="only this dataset (emoji, mnist, trafficsign, aerial)")
    export.add_argument("--all", action="store_true",
                        help="every run, no lr selection (default: per model and scenario the lr with the higher "
                             "median best_acc over seeds 1-5, and its seeds 1-50 (emoji) or 1-25)")
    export.add_argument("--space-out", default="",
                        help="also write a tune space that trains every model and scenario of --data at its kept lr "
                             "(seeds 1-50 or 1-25; finished runs are skipped by the sweep)")
    export.set_defaults(stir_run=_run_export)

    analyze = sub.add_parser("analyze", formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog=examples_epilog(('raysys stir analyze <run id> data.path=data/stir/emoji', 'raysys stir analyze emoji-seed1-standard tracking.uri=sqlite:///mlflow.db',)), help="log errors.npz / indices.npz (equivariance, scale indices) "
                                             "into a finished STIR run")
    analyze.add_argument("run", help="MLflow run id, run name or checkpoint path of a STIR training run")
    analyze.add_argument("overrides", nargs="*", help="key=value, e.g. tracking.uri=... data.path=...")
    analyze.set_defaults(stir_run=_run_analyze)

    return lambda args: args.stir_run(args)


def _run_generate(args: argparse.Namespace) -> int:
    from pipelines.stir.generate import generate

    manifest = generate(args.name, args.out, source=args.source, seed=args.seed, instances=args.instances,
                        overwrite=args.overwrite, rows_per_shard=args.rows_per_shard, glyphs=args.glyphs)
    _print_summary(manifest, args.out)
    return 0


def _run_fetch_glyphs(args: argparse.Namespace) -> int:
    from pipelines.stir import fontawesome

    cached = fontawesome.cached_tarball() is not None
    path = fontawesome.fetch(registry=args.registry, use_npm=False if args.no_npm else None)
    print(json.dumps({"package": fontawesome.FONTAWESOME5.spec, "path": str(path),
                      "integrity": fontawesome.FONTAWESOME5.integrity, "was_cached": cached}))
    return 0


def _run_shards(args: argparse.Namespace) -> int:
    from pipelines.stir.generate import convert

    manifest = convert(args.source, args.out, name=args.name, overwrite=args.overwrite,
                       rows_per_shard=args.rows_per_shard)
    _print_summary(manifest, args.out)
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from pipelines.report.stir_runs import DATASETS, search_records, select_lr, selected_space, write_clean_csv
    from raysys.errors import ConfigError, one_of
    from raysys.track.uri import resolve_tracking_uri

    if args.data and args.data not in DATASETS:
        raise ConfigError(f"stir export --data: {one_of(args.data, DATASETS)}")
    if args.space_out and (args.all or not args.data):
        raise ConfigError("stir export --space-out needs --data (one dataset per space) and the lr selection (no --all)")
    from raysys.cli.report import split_tracking_uri

    rest, given = split_tracking_uri(args.overrides, args.tracking_uri)
    if rest:
        raise ConfigError(f"stir export takes only tracking.uri=..., not {rest[0]!r}")
    uri = resolve_tracking_uri(given)
    records = search_records(uri, args.experiment, data=args.data)
    if not records:
        scope = f" of dataset {args.data!r}" if args.data else ""
        print(f"error: no FINISHED STIR runs{scope} in MLflow experiment {args.experiment!r} at {uri}", file=sys.stderr)
        return 1
    selection = None if args.all else select_lr(records)
    rows = records if selection is None else selection.records
    write_clean_csv(rows, args.out)
    summary = {"out": args.out, "experiment": args.experiment, "runs_found": len(records), "runs_written": len(rows)}
    if selection is not None:
        summary["lr"] = {"/".join(map(str, c.key)): c.lr for c in selection.choices}
    if args.space_out:
        import yaml

        space = selected_space(selection, args.data)
        header = f"# Written by: python -m raysys stir export --data {args.data} --space-out (the kept lr per row)\n"
        Path(args.space_out).write_text(header + yaml.safe_dump(space, sort_keys=False, width=120))
        summary["space"] = {"out": args.space_out, "rows": len(space["presets"])}
    print(json.dumps(summary))
    return 0


def _run_analyze(args: argparse.Namespace) -> int:
    from raysys.driver.checkpoints import resolve
    from raysys.families.stir.analysis import analyse_trained

    print(json.dumps(analyse_trained(resolve(args.run, args.overrides), args.run)))
    return 0
