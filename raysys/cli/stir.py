"""``python -m raysys stir``: generate STIR datasets, or shard an original STIR npz file."""
from __future__ import annotations

import argparse
import json

from raysys.cli.registry import command


def _print_summary(manifest: dict, out: str) -> None:
    counts = {name: split["count"] for name, split in manifest["splits"].items()}
    print(json.dumps({"dataset": manifest["dataset"], "out": out, "npz": manifest["options"].get("npz"),
                      "classes": manifest["num_classes"], "splits": counts}))


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for <name>.npz, the shards and manifest.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing STIR folder at --out")
    parser.add_argument("--rows-per-shard", type=int, default=None)


@command("stir", help="STIR (scale equivariance): generate a dataset, or shard an original npz file.")
def stir_command(parser: argparse.ArgumentParser):
    sub = parser.add_subparsers(dest="stir_command", metavar="<generate|shards>")
    sub.required = True

    gen = sub.add_parser("generate", help="generate STIR emoji, mnist, trafficsign or aerial")
    gen.add_argument("name", help="emoji, mnist, trafficsign or aerial")
    gen.add_argument("--source", default=None,
                     help="original files: IDX folder (mnist), MTSD folder (trafficsign), DOTA folder (aerial); "
                          "emoji: optional Font Awesome SVG folder (default: the fontawesomefree package)")
    gen.add_argument("--seed", type=int, default=42, help="random positions and selection (default 42, the original's)")
    gen.add_argument("--instances", type=int, default=None,
                     help="instances per class and split (default: the original's; smaller for quick tests)")
    _add_output_arguments(gen)
    gen.set_defaults(stir_run=_run_generate)

    shards = sub.add_parser("shards", help="write shards for an existing original-layout STIR npz file")
    shards.add_argument("--source", required=True, help="the .npz file (or a folder holding <name>.npz)")
    shards.add_argument("--name", default=None, help="emoji, mnist, trafficsign or aerial (default: the file name)")
    _add_output_arguments(shards)
    shards.set_defaults(stir_run=_run_shards)

    return lambda args: args.stir_run(args)


def _run_generate(args: argparse.Namespace) -> int:
    from pipelines.stir.generate import generate

    manifest = generate(args.name, args.out, source=args.source, seed=args.seed, instances=args.instances,
                        overwrite=args.overwrite, rows_per_shard=args.rows_per_shard)
    _print_summary(manifest, args.out)
    return 0


def _run_shards(args: argparse.Namespace) -> int:
    from pipelines.stir.generate import convert

    manifest = convert(args.source, args.out, name=args.name, overwrite=args.overwrite,
                       rows_per_shard=args.rows_per_shard)
    _print_summary(manifest, args.out)
    return 0
