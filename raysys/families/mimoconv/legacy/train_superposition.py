"""``python src/train_superposition.py ...`` (MIMOConv) -> ``raysys train <preset> ...``.

The translation starts from the ``mimoconv/`` preset of the command's model,
dataset, binding and capacity (a Table 1 row), and overrides every value in
which the command differs from it. It also turns on the original's behaviour
where raysys's default differs (docs/fidelity.md): evaluation with batch
statistics (``mimo.eval_batch_stats``), skipping a non-finite loss's step
(``mimo_recipe.skip_nonfinite_loss``) and the ISO convs' effective init
(``mimo.legacy_iso_init``). ``-t`` becomes
``mimo_recipe.transfer_learning_path``.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

from raysys.config.loader import load_config
from raysys.families.mimoconv.legacy import flags as mimo_flags
from raysys.legacy.registry import Translation, register_translator

SCRIPT = "train_superposition.py"
HOLDOUT_ROWS = 5000  # the 45k/5k train/validation split of a run without -f
HOLDOUT_SEED = 42


def _parser():
    p = mimo_flags.parser(SCRIPT)
    p.add_argument("-x", "--experiment_nr", type=int, required=True)
    p.add_argument("-f", "--final", action="store_true")
    p.add_argument("-j", "--binding_regularization", type=float, default=0.1)
    p.add_argument("-o", "--orthogonal_regularization", type=float, default=1e-4)
    p.add_argument("-u", "--sup_frequency", type=float, default=1.0)
    p.add_argument("-e", "--epochs", type=int, default=200)
    p.add_argument("-l", "--lr", type=float, default=0.2)
    p.add_argument("-d", "--weight_decay", type=float, default=1e-5)
    p.add_argument("-a", "--mixup_alpha", type=float, default=1.0)
    p.add_argument("-g", "--gradient_clipping", type=float, default=10.0)
    p.add_argument("-c", "--checkpointing_path", type=str, default=None)
    p.add_argument("-t", "--transfer_learning_path", type=str, default=None)
    p.add_argument("-r", "--random_seed", type=int, default=42)
    return p


def preset_for(model: str, dataset: str, binding: str, num: int, dynamic: bool) -> str:
    """The Table 1 preset closest to the command (the overrides do the rest)."""
    family = model.split("-")[0]
    if family == "WideResNet":
        name = "wrn28-10"
    elif family in ("WideISOReLUNet", "WideISONet"):
        name = "wideisonet28-10"
    elif dynamic:
        name = "mimonet28-10-dynamic"
    else:
        name = f"mimonet28-10-n{num if num in (1, 2, 4) else 1}"
    return f"mimoconv/{dataset}-{name}"


def _values(args) -> Dict[str, Any]:
    values = mimo_flags.model_values(args)
    values.update({
        "superposition.sup_frequency": args.sup_frequency,
        "mimo_recipe.binding_reg": args.binding_regularization,
        "mimo_recipe.isometry_reg": args.orthogonal_regularization,
        "mimo_recipe.mixup_alpha": args.mixup_alpha,
        "mimo_recipe.grad_skip_ratio": args.gradient_clipping,
        "train.epochs": args.epochs,
        "train.lr": args.lr,
        "train.weight_decay": args.weight_decay,
        "data.holdout": 0 if args.final else HOLDOUT_ROWS,
        "data.holdout_seed": HOLDOUT_SEED,
        "seed": args.random_seed,
    })
    if args.checkpointing_path:
        values["checkpoint.storage_path"] = args.checkpointing_path
    if args.transfer_learning_path:
        values["mimo_recipe.transfer_learning_path"] = args.transfer_learning_path
    # What the original always does: evaluate with batch statistics, skip a NaN loss's step (its
    # grad-norm test fails), keep the ReLU gain of the ISO convs (its leaky-ReLU re-init never ran).
    values.update(mimo_flags.ORIGINAL_BEHAVIOUR)
    values["mimo_recipe.skip_nonfinite_loss"] = True
    values["mimo.legacy_iso_init"] = True
    return values


@register_translator(SCRIPT)
def translate_train_superposition(argv: Sequence[str]) -> Translation:
    parsed = mimo_flags.parse(_parser(), argv)
    args = parsed.args
    values = _values(args)
    preset = preset_for(args.model, values["data.name"], args.type, args.num, bool(args.sup_low))
    overrides = mimo_flags.differing_overrides(load_config(preset), values, always=("seed",))
    notes = list(parsed.notes)
    notes.append(f"-x/--experiment_nr {args.experiment_nr} only named the TensorBoard folder; the MLflow run name identifies the run")
    if args.checkpointing_path:
        notes.append("-c/--checkpointing_path: Ray Train checkpoints (with the MLflow run) resume automatically")
    return Translation("train", preset, overrides, notes)
