"""``eval``: distributed evaluation of a model; ``export-weights``: a checkpoint's weights, in raysys's or the original's format.

The evaluators come from the registry in :mod:`raysys.eval.evaluators`
(``accuracy``, ``shift-consistency``, ``diagonal-consistency``, and whatever
other families register); ``--metrics`` or ``evaluate.metrics`` picks them.
"""
from __future__ import annotations

import argparse
import json

from raysys.cli.commands import add_preset_arguments
from raysys.cli.registry import command


def _load(args: argparse.Namespace):
    from raysys.config import load_config

    return load_config(args.preset, args.overrides)


def _is_preset(name: str) -> bool:
    from raysys.config.loader import list_presets

    return name in {p.name for p in list_presets()}


def _preset_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_arguments(
        parser,
        preset_help="preset name, e.g. antialiased/eval-resnet50_lpf4 (see `raysys presets`); "
        "for eval also a trained run: MLflow run id, run name or checkpoint path",
        overrides_example="antialias.weights=weights/x.pth",
    )


@command("eval", help="Evaluate a model on the validation shards with Ray (accuracy, shift consistency, ...), into MLflow.", examples=(
    'raysys eval antialiased/eval-resnet50_lpf4 antialias.weights=weights/resnet50_lpf4.pth',
    'raysys eval <run id | run name | checkpoint> --metrics accuracy,shift-consistency',
    'raysys eval --list',
))
def eval_command(parser: argparse.ArgumentParser):
    _preset_arguments(parser)
    parser.add_argument("--metrics", default="", help="comma-separated evaluators (default: evaluate.metrics), e.g. accuracy,shift-consistency")
    parser.add_argument("--weights", default="", help="local weights file loaded over the model: a raysys checkpoint or export, "
                        "or the original's file (docs/weights.md), checked as training checks it")
    parser.add_argument("--run-id", default="", help="log into this existing MLflow run (e.g. the training run) instead of a new one")
    parser.add_argument("--list", action="store_true", help="list the registered evaluators and exit")

    def run(args: argparse.Namespace) -> int:
        if args.list:
            from raysys.eval.evaluators import EVALUATORS

            for name, cls in EVALUATORS.items():
                print(f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
            return 0
        from raysys.console import phase

        phase(f"eval {args.preset}: loading the config")
        from raysys.driver.evaluation import evaluate_trained, run_evaluation

        names = [n.strip() for n in args.metrics.split(",") if n.strip()] or None
        if not _is_preset(args.preset):
            # A trained model: MLflow run id, run name or checkpoint path (raysys/driver/checkpoints.py).
            print(json.dumps(evaluate_trained(args.preset, args.overrides, names)))
            return 0
        cfg = _load(args)
        print(json.dumps(run_evaluation(cfg, names, weights=args.weights, run_id=args.run_id)))
        return 0

    return run


@command("export-weights", help="Save a checkpoint's model weights, in raysys's format or the original code's (docs/weights.md).", examples=(
    'raysys export-weights cifar-resnet/fashion-mnist-resnet20 --checkpoint runs/<run>/checkpoint_000001 --out resnet20.pth',
    'raysys export-weights antialiased/eval-resnet50_lpf4 --checkpoint model_best.pth.tar --out resnet50_lpf4.pth',
    'raysys export-weights stir/emoji model.name=stir_hermite --run <run id | run name> --format original --out model.pt',
))
def export_weights_command(parser: argparse.ArgumentParser):
    _preset_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a raysys checkpoint (state.pt or its folder) or a weights file of the original's")
    source.add_argument("--run", help="an MLflow run id, or a run name in the preset's experiment (tracking.uri=...): "
                        "its newest checkpoint, or its best where the preset keeps the best")
    parser.add_argument("--out", required=True, help="the file to write")
    parser.add_argument("--format", default="raysys", help="raysys ({'state_dict', 'arch'}, default) or original "
                        "(the layout the family's original code loads with strict=True)")

    def run(args: argparse.Namespace) -> int:
        from raysys.driver.checkpoints import export_weights

        result = export_weights(_load(args), args.checkpoint or "", args.out, run=args.run or "", fmt=args.format)
        print(json.dumps(result))
        return 0

    return run
