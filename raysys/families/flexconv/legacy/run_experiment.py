"""FlexConv's ``run_experiment.py`` (Tables 3, 6, 8, 9): one training run -> ``raysys train``."""
from __future__ import annotations

from typing import Sequence

from raysys.families.flexconv.legacy.flags import translate_command
from raysys.legacy.registry import Translation, register_translator


@register_translator("run_experiment.py")
def translate_run_experiment(args: Sequence[str]) -> Translation:
    return translate_command("run_experiment.py", args, cross_res=False)
