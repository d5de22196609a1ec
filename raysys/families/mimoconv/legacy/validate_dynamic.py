"""``python src/validate_dynamic.py ...`` (MIMOConv) -> ``raysys eval <checkpoint> ...``.

``-c`` names the trained model (a raysys run id, run name or checkpoint path).
The architecture flags become overrides that ``raysys eval`` checks against the
checkpoint's own config, as the original required them to match the weights;
``--sup_low`` picks the mode (1 slow, 2 normal, 4 fast).
"""
from __future__ import annotations

from typing import Sequence

from raysys.errors import ConfigError
from raysys.families.mimoconv.legacy import flags as mimo_flags
from raysys.legacy.registry import Translation, register_translator

SCRIPT = "validate_dynamic.py"


@register_translator(SCRIPT)
def translate_validate_dynamic(argv: Sequence[str]) -> Translation:
    p = mimo_flags.parser(SCRIPT)
    p.add_argument("-c", "--checkpoint", type=str, default="")
    parsed = mimo_flags.parse(p, argv)
    args = parsed.args
    if not args.checkpoint:
        raise ConfigError(f"legacy {SCRIPT}: give the trained model with -c/--checkpoint (a run id, run name or checkpoint path)")
    values = mimo_flags.model_values(args)
    values.pop("data.path")  # the shards the run was trained on, unless overridden
    # The original's evaluation batch is batch_size x num images (before binding).
    values["evaluate.batch_size"] = values.pop("train.batch_size") * args.num
    overrides = [mimo_flags.override(key, value) for key, value in values.items()]
    notes = [*parsed.notes, "throughput is timed with CUDA synchronisation (the original timed without it)"]
    return Translation("eval", args.checkpoint, overrides, notes)
