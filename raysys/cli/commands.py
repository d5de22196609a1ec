"""The core subcommands: presets, prepare, train, summary, legacy."""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

from raysys.cli.registry import command


def _load(args: argparse.Namespace):
    # The catalog registers every name a config may refer to, so a bad value
    # is refused here, before Ray starts.
    from raysys.config import load_config

    return load_config(args.preset, args.overrides)


@command("presets", help="List the shipped presets, grouped by paper.")
def presets_command(parser: argparse.ArgumentParser):
    parser.add_argument("--json", action="store_true", help="print one JSON object")

    def run(args: argparse.Namespace) -> int:
        from raysys.config import list_presets, paper_titles

        titles = paper_titles()
        grouped = defaultdict(list)
        for info in list_presets():
            grouped[info.paper].append(info)
        if args.json:
            print(json.dumps({p: [{"name": i.name, "description": i.description} for i in items] for p, items in grouped.items()}))
            return 0
        for paper, items in grouped.items():
            print(f"{paper}: {titles.get(paper, '')}")
            width = max(len(i.name) for i in items)
            for info in items:
                print(f"  {info.name.ljust(width)}  {info.description}")
        return 0

    return run


@command("prepare", help="Convert a dataset from its original on-disk format to Parquet shards.")
def prepare_command(parser: argparse.ArgumentParser):
    parser.add_argument("dataset", help="dataset name, e.g. fashion-mnist, cifar10, stl10, imagenet, imagenet32")
    parser.add_argument("--source", required=True, help="folder with the original files")
    parser.add_argument("--out", required=True, help="folder for the shards and manifest.json")
    parser.add_argument("--overwrite", action="store_true", help="replace existing shards at --out")
    parser.add_argument("--rows-per-shard", type=int, default=None)
    parser.add_argument("--resize", type=int, default=0, help="ImageFolder: resize the short side to this many pixels")
    parser.add_argument("--include-unlabeled", action="store_true", help="STL-10: also write the unlabeled split")

    def run(args: argparse.Namespace) -> int:
        from pipelines.prepare import prepare

        manifest = prepare(
            args.dataset, args.source, args.out, overwrite=args.overwrite,
            rows_per_shard=args.rows_per_shard, resize=args.resize, include_unlabeled=args.include_unlabeled,
        )
        counts = {name: split["count"] for name, split in manifest["splits"].items()}
        print(json.dumps({"dataset": manifest["dataset"], "out": args.out, "splits": counts}))
        return 0

    return run


def add_preset_arguments(
    parser: argparse.ArgumentParser,
    preset_help: str = "preset name, e.g. cifar-resnet/fashion-mnist-resnet20 (see `raysys presets`)",
    overrides_example: str = "train.epochs=2 seed=1",
) -> None:
    """The ``preset`` positional and the dotted ``overrides`` that every run-like command takes."""
    parser.add_argument("preset", help=preset_help)
    parser.add_argument("overrides", nargs="*", help=f"dotted overrides key=value, e.g. {overrides_example}")


@command("train", help="Train a preset on Ray (Ray Train + Ray Data), tracked in MLflow.")
def train_command(parser: argparse.ArgumentParser):
    add_preset_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--rerun", action="store_true",
                        help="train again although this config's run FINISHED: a new run; the old one is tagged superseded")

    def run(args: argparse.Namespace) -> int:
        cfg = _load(args)
        if args.print_config:
            from raysys.config import to_yaml

            print(to_yaml(cfg))
            return 0
        from raysys.driver.training import run_training

        summary = run_training(cfg, progress=not args.no_progress and sys.stderr.isatty(), rerun=args.rerun)
        if summary["status"] == "already finished":
            print(f"run {summary['run_name']} already finished (run {summary['run_id']}); "
                  "nothing to train (--rerun trains it again as a new run)", file=sys.stderr)
        print(json.dumps(summary))
        return 0

    return run


@command("summary", help="Print a preset's model: layer table and parameter count.")
def summary_command(parser: argparse.ArgumentParser):
    add_preset_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--batch", type=int, default=1, help="batch size of the dummy input")

    def run(args: argparse.Namespace) -> int:
        from raysys.models import build_model
        from raysys.models.summary import format_table, summarize
        from raysys.train.inputs import input_spec

        cfg = _load(args)
        spec = input_spec(cfg)
        model = build_model(cfg, spec)
        # a model computing in superposition needs at least one full bundle of images
        batch = max(args.batch, getattr(model, "superposition", 1))
        table = summarize(model, [batch, spec.channels, spec.size, spec.size])
        table["preset"] = cfg.preset
        print(json.dumps(table) if args.json else format_table(table))
        return 0

    return run


@command("legacy", help="Run (or --print) an original codebase's command line on raysys.")
def legacy_command(parser: argparse.ArgumentParser):
    parser.add_argument("--print", action="store_true", dest="print_only", help="only print the equivalent raysys command")
    parser.add_argument("original", nargs=argparse.REMAINDER, help="-- python <script> <args...>")

    def run(args: argparse.Namespace) -> int:
        from raysys.cli.main import main
        from raysys.legacy import translate

        original = [a for a in args.original if a != "--"] if args.original[:1] == ["--"] else args.original
        translation = translate(original)
        for note in translation.notes:
            print(f"note: {note}", file=sys.stderr)
        if args.print_only:
            print(translation.shell())
            return 0
        return main(translation.argv())

    return run
