"""The MIMOConv scripts' argparse command lines -> raysys config values.

``train_superposition.py`` and ``validate_dynamic.py`` share their positional
arguments (``model dataset type num``) and the model flags. Short and long
flags are both accepted (argparse, like the original); every flag is mapped,
noted (it only concerned the original's environment) or refused by name.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence

from raysys.errors import ConfigError

MODELS = ["WideResNet-28", "WideISOReLUNet-28", "WideISONet-28", "MIMONet-28",
          "WideResNet-16", "WideISOReLUNet-16", "WideISONet-16", "MIMONet-16", "MIMONet-10"]
DATASETS = {"CIFAR10": "cifar10", "CIFAR100": "cifar100"}
# Datasets the original accepts that raysys has no MIMOConv data for.
REFUSED_DATASETS = ("MNIST", "SVHN", "CUB")
BINDINGS = ["None", "HRR", "MBAT"]


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line ConfigError instead of exiting."""

    def __init__(self, script: str):
        super().__init__(prog=script, add_help=False)
        self.script = script

    def error(self, message: str):
        raise ConfigError(f"legacy {self.script}: {message}")


@dataclass
class Parsed:
    script: str
    args: argparse.Namespace
    notes: List[str] = field(default_factory=list)


def parser(script: str) -> _Parser:
    """The arguments both scripts share: positionals and model flags (original defaults)."""
    p = _Parser(script)
    p.add_argument("model")
    p.add_argument("dataset")
    p.add_argument("type")
    p.add_argument("num", type=int)
    p.add_argument("-w", "--width", type=int, default=1)
    p.add_argument("-i", "--initial_width", type=int, default=1)
    p.add_argument("-p", "--relu_parameter_init", type=float, default=None)
    p.add_argument("-k", "--skip_init", action="store_true")
    p.add_argument("-q", "--dirac_init", action="store_true")
    p.add_argument("-z", "--batch_norm_disabled", action="store_true")
    p.add_argument("-v", "--trainable_keys_disabled", action="store_true")
    p.add_argument("-s", "--sup_low", type=int, default=None)
    p.add_argument("-b", "--batch_size", type=int, default=128)
    p.add_argument("-n", "--number_of_cpus", type=int, default=None)
    return p


def parse(p: _Parser, argv: Sequence[str]) -> Parsed:
    """Parse ``argv``; an unknown flag is refused by name, a bad positional by its choices."""
    for token in argv:
        _check_flag(p, token)
    args = p.parse_args(list(argv))
    _choice(p.script, "model", args.model, MODELS)
    if args.dataset in REFUSED_DATASETS:
        raise ConfigError(f"legacy {p.script}: dataset {args.dataset} is not supported for MIMOConv; allowed: {', '.join(DATASETS)}")
    _choice(p.script, "dataset", args.dataset, list(DATASETS))
    _choice(p.script, "type", args.type, BINDINGS)
    if args.sup_low is not None and (args.sup_low < 1 or args.num % args.sup_low):
        raise ConfigError(f"legacy {p.script}: --sup_low (-s) {args.sup_low} must divide num {args.num}")
    parsed = Parsed(p.script, args)
    if args.number_of_cpus is not None:
        parsed.notes.append("-n/--number_of_cpus ignored: Ray Data decodes and augments batches (scaling.cpus_per_worker sets the worker's CPUs)")
    return parsed


def _choice(script: str, name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"legacy {script}: bad {name} {value!r}; allowed: {', '.join(allowed)}")


def _flag_list(p: argparse.ArgumentParser) -> str:
    return " ".join(a.option_strings[0] for a in p._actions if a.option_strings)


def _check_flag(p: argparse.ArgumentParser, token: str) -> None:
    """Refuse a flag the original does not have (exact, or a unique long-flag prefix as argparse allows)."""
    if not token.startswith("-") or token == "-" or token[1:2].isdigit():
        return
    name = token.split("=", 1)[0]
    known = [s for a in p._actions for s in a.option_strings]
    if name in known or (len(name) > 2 and not name.startswith("--") and name[:2] in known):
        return  # -x or -x5 (a short flag with its value attached)
    if name.startswith("--") and sum(s.startswith(name) for s in known if s.startswith("--")) == 1:
        return
    raise ConfigError(f"legacy {p.prog}: unsupported flag {name!r} (the original's flags: {_flag_list(p)})")


def model_values(args: argparse.Namespace) -> Dict[str, Any]:
    """Config values of the architecture, binding and data (the original's defaults filled in)."""
    return {
        "model.name": args.model,
        "data.name": DATASETS[args.dataset],
        "data.path": f"data/shards/{DATASETS[args.dataset]}",
        "superposition.binding": args.type,
        "superposition.capacity": args.num,
        "superposition.sup_low": args.sup_low or 0,
        "mimo.width": args.width,
        "mimo.initial_width": args.initial_width,
        "mimo.relu_parameter_init": args.relu_parameter_init,
        "mimo.skip_init": args.skip_init,
        "mimo.dirac_init": args.dirac_init,
        "mimo.batch_norm_disabled": args.batch_norm_disabled,
        "mimo.trainable_keys_disabled": args.trainable_keys_disabled,
        "train.batch_size": args.batch_size,
    }


# The original's behaviour where it differs from raysys's default (docs/fidelity.md), set by
# every translation: the published numbers were produced this way.
ORIGINAL_BEHAVIOUR = {"mimo.eval_batch_stats": True}


def differing_overrides(base: Any, values: Dict[str, Any], always: Sequence[str] = ()) -> List[str]:
    """``key=value`` for every value that differs from the config ``base`` (and the keys ``always``)."""
    overrides = []
    for key, value in values.items():
        current = base
        for part in key.split("."):
            current = current[part]
        if current != value or key in always:
            overrides.append(override(key, value))
    return overrides


def override(key: str, value: Any) -> str:
    """``key=value`` that parses back (as YAML) to ``value``."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    return f"{key}={text}"
