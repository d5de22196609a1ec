"""The core subcommands: presets, prepare, train, summary, legacy."""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

from raysys.cli.registry import command


def _load(args: argparse.Namespace):
    # Loading discovers every family's registered names, so a bad value is
    # refused here, before Ray starts.
    from raysys.config import load_config

    return load_config(args.preset, args.overrides)


@command("presets", help="List the shipped presets, grouped by paper.", examples=(
    'raysys presets',
    'raysys presets --json',
))
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


@command("prepare", help="Convert a dataset from its original on-disk format to Parquet shards.", examples=(
    'raysys prepare fashion-mnist --source /usr/share/datasets/fashion-mnist --out data/shards/fashion-mnist',
    'raysys prepare cifar10 --source cifar-10-batches-py --out data/shards/cifar10',
    'raysys prepare imagenet --source ILSVRC2012 --out data/shards/imagenet --resize 256',
))
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


@command("train", help="Train a preset on Ray (Ray Train + Ray Data), tracked in MLflow.", examples=(
    'raysys train cifar-resnet/fashion-mnist-resnet20 train.epochs=2 scaling.num_workers=2',
    'raysys train cifar-resnet/fashion-mnist-resnet20 tracking.uri=http://mlflow:5000 seed=1',
    'raysys train cifar-resnet/fashion-mnist-resnet20 --print-config',
))
def train_command(parser: argparse.ArgumentParser):
    add_preset_arguments(parser)
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress display (default: a live bar on a terminal, a line per tenth of an epoch elsewhere)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--rerun", action="store_true",
                        help="train again although this config's run FINISHED: a new run; the old one is tagged superseded")

    def run(args: argparse.Namespace) -> int:
        if not args.print_config:
            from raysys.console import phase

            phase(f"train {args.preset}: loading the preset and checking the config")
        cfg = _load(args)
        if args.print_config:
            from raysys.config import to_yaml

            print(to_yaml(cfg))
            return 0
        from raysys.driver.training import run_training

        summary = run_training(cfg, progress=not args.no_progress, rerun=args.rerun)
        if summary["status"] == "already finished":
            print(f"run {summary['run_name']} already finished (run {summary['run_id']}); "
                  "nothing to train (--rerun trains it again as a new run)", file=sys.stderr)
        print(json.dumps(summary))
        return 0

    return run


@command("summary", help="Print a preset's model: layer table and parameter count.", examples=(
    'raysys summary cifar-resnet/fashion-mnist-resnet20',
    'raysys summary cifar-resnet/fashion-mnist-resnet20 model.name=cifar_resnet32 --json',
))
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


@command("legacy", help="Run (or --print) an original codebase's command line on raysys.", examples=(
    'raysys legacy --print -- python main.py --data /PTH/TO/ILSVRC2012 -a resnet50_lpf4 --pretrained -e',
    'raysys legacy --print -- python src/train_superposition.py -e 1200 -x 5 --width 10 MIMONet-28 CIFAR10 HRR 4',
    'raysys legacy -- python run_crossres.py cross_res.source_res=16 cross_res.target_res=32',
))
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
