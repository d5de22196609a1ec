"""``python src/validate_dynamic.py ...`` (MIMOConv) -> ``raysys eval ...``.

``-c`` names the trained model:

- a raysys run id, run name or checkpoint path -> ``raysys eval <it> ...``; the
  architecture flags become overrides that ``raysys eval`` checks against the
  checkpoint's own config, as the original required them to match the weights;
- one of the original's own checkpoint files (``<identifier>_model.pt``, no config) ->
  ``raysys eval <Table 1 preset> mimo.weights=<file> ...``: the flags build the model, the
  file's ``model_state_dict`` is loaded into it strictly.

``--sup_low`` picks the mode (1 slow, 2 normal, 4 fast); every mode is measured anyway.
The translation evaluates as the original (``mimo.eval_batch_stats=true``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from raysys.config.loader import load_config
from raysys.errors import ConfigError
from raysys.families.mimoconv.legacy import flags as mimo_flags
from raysys.families.mimoconv.legacy.train_superposition import preset_for
from raysys.legacy.registry import Translation, register_translator

SCRIPT = "validate_dynamic.py"


def is_original_checkpoint(target: str) -> bool:
    """Whether ``target`` is a file that is not a raysys training checkpoint (which holds its config)."""
    path = Path(target).expanduser()
    if not path.is_file():
        return False  # a run id, a run name, or a raysys checkpoint folder
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # the original's files pickle its scheduler and optimizer too
        return True
    return not (isinstance(state, dict) and "config" in state and "model" in state)


@register_translator(SCRIPT)
def translate_validate_dynamic(argv: Sequence[str]) -> Translation:
    p = mimo_flags.parser(SCRIPT)
    p.add_argument("-c", "--checkpoint", type=str, default="")
    parsed = mimo_flags.parse(p, argv)
    args = parsed.args
    if not args.checkpoint:
        raise ConfigError(f"legacy {SCRIPT}: give the trained model with -c/--checkpoint (a run id, run name or checkpoint path)")
    values = mimo_flags.model_values(args)
    # The original's evaluation batch is batch_size x num images (before binding).
    values["evaluate.batch_size"] = values.pop("train.batch_size") * args.num
    values.update(mimo_flags.ORIGINAL_BEHAVIOUR)
    notes = [*parsed.notes, "throughput is timed with CUDA synchronisation (the original timed without it)"]
    if is_original_checkpoint(args.checkpoint):
        values["mimo.weights"] = args.checkpoint
        preset = preset_for(args.model, values["data.name"], args.type, args.num, bool(args.sup_low))
        notes.append(f"{args.checkpoint} is one of the original's checkpoints: its weights are loaded into {preset}'s model as the flags set it")
        return Translation("eval", preset, mimo_flags.differing_overrides(load_config(preset), values), notes)
    values.pop("data.path")  # the shards the run was trained on, unless overridden
    overrides = [mimo_flags.override(key, value) for key, value in values.items()]
    return Translation("eval", args.checkpoint, overrides, notes)
