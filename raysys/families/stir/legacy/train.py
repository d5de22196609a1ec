"""``python scripts/train.py ...`` (taltstidl/scale-equivariant-cnn) -> ``raysys train stir/<data> ...``.

The original's flags, all required: ``--model``, ``--data`` (the README calls
it ``--dataset``; both are accepted), ``--evaluation``, ``--kernel-size``,
``--interpolation``, ``--lr``, ``--seed``. Any other flag is refused by name.
The translation trains in the original's order (``stir.shuffle=once``: its
train rows shuffled once with seed 42, the same order every epoch).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from raysys.errors import ConfigError
from raysys.families.stir.layers.siconv import INTERPOLATIONS
from raysys.families.stir.models import KERNEL_SIZES, MODEL_NAMES
from raysys.legacy.registry import Translation, register_translator

SCRIPT = "train.py"
DATASETS = ("emoji", "mnist", "trafficsign", "aerial")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ConfigError(f"legacy {SCRIPT}: {message}")


def _parser() -> _Parser:
    p = _Parser(prog=SCRIPT, add_help=False, allow_abbrev=False)
    p.add_argument("--model", choices=MODEL_NAMES, required=True)
    p.add_argument("--data", "--dataset", dest="data", choices=DATASETS, required=True)
    p.add_argument("--evaluation", type=int, choices=[1, 2, 3, 4], required=True)
    p.add_argument("--kernel-size", type=int, choices=list(KERNEL_SIZES), required=True)
    p.add_argument("--interpolation", choices=INTERPOLATIONS, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--seed", type=int, required=True)
    return p


@register_translator(SCRIPT)
def translate_stir_train(argv: Sequence[str]) -> Translation:
    args, unknown = _parser().parse_known_args(list(argv))
    if unknown:
        flags = [token for token in unknown if token.startswith("-")] or unknown
        raise ConfigError(f"legacy {SCRIPT}: unsupported argument {flags[0]!r}; allowed: --model, --data/--dataset, "
                          "--evaluation, --kernel-size, --interpolation, --lr, --seed")
    notes = []
    if args.lr not in (1e-2, 1e-3):
        notes.append(f"--lr {args.lr:g}: the original accepts only 0.01 and 0.001")
    overrides = [
        f"model.name=stir_{args.model}", f"stir.evaluation={args.evaluation}",
        f"stir.kernel_size={args.kernel_size}", f"stir.interpolation={args.interpolation}",
        f"train.lr={args.lr:g}", f"seed={args.seed}", "stir.shuffle=once",
    ]
    notes.append(f"data from data/stir/{args.data} (python -m raysys stir generate {args.data} --out data/stir/{args.data});"
                 f" the original read ./{args.data}.npz")
    return Translation("train", f"stir/{args.data}", overrides, notes)
