"""``eval``: distributed evaluation of a model; ``export-weights``: a checkpoint's bare weights.

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


@command("eval", help="Evaluate a model on the validation shards with Ray (accuracy, shift consistency, ...), into MLflow.")
def eval_command(parser: argparse.ArgumentParser):
    _preset_arguments(parser)
    parser.add_argument("--metrics", default="", help="comma-separated evaluators (default: evaluate.metrics), e.g. accuracy,shift-consistency")
    parser.add_argument("--weights", default="", help="local weights file loaded over the model (state_dict, {'state_dict'} or a raysys checkpoint)")
    parser.add_argument("--run-id", default="", help="log into this existing MLflow run (e.g. the training run) instead of a new one")
    parser.add_argument("--list", action="store_true", help="list the registered evaluators and exit")

    def run(args: argparse.Namespace) -> int:
        if args.list:
            from raysys.eval.evaluators import EVALUATORS

            for name, cls in EVALUATORS.items():
                print(f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
            return 0
        from raysys.driver.evaluation import run_evaluation

        names = [n.strip() for n in args.metrics.split(",") if n.strip()] or None
        if not _is_preset(args.preset):
            # A trained model: MLflow run id, run name or checkpoint path (raysys/eval/trained.py).
            from raysys.eval.trained import evaluate_trained

            print(json.dumps(evaluate_trained(args.preset, args.overrides, names)))
            return 0
        cfg = _load(args)
        print(json.dumps(run_evaluation(cfg, names, weights=args.weights, run_id=args.run_id)))
        return 0

    return run


@command("export-weights", help="Save a checkpoint's model weights without optimizer state or DDP prefixes.")
def export_weights_command(parser: argparse.ArgumentParser):
    _preset_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help="a raysys checkpoint (state.pt or its folder) or an original .pth.tar")
    parser.add_argument("--out", required=True, help="where to write {'state_dict': ...}")

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from raysys.models import build_model
        from raysys.models.weights import load_state, read_state_dict, save_weights
        from raysys.train.inputs import input_spec

        cfg = _load(args)
        source = Path(args.checkpoint)
        if source.is_dir():
            source = source / "state.pt"
        state = read_state_dict(source)
        if "antialias" in cfg:
            cfg.antialias.weights = ""  # the checkpoint replaces any initial weights
        load_state(build_model(cfg, input_spec(cfg)), state, str(source))  # refuses a checkpoint of another model
        out = save_weights(state, args.out)
        print(json.dumps({"weights": str(out), "tensors": len(state)}))
        return 0

    return run
