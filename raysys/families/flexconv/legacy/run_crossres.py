"""FlexConv's ``run_crossres.py`` (Tables 4, 7): train at ``cross_res.source_res``, fine-tune at
``cross_res.target_res`` -> ``raysys train`` of a ``flexconv/crossres-*`` preset (one run, two phases)."""
from __future__ import annotations

from typing import Sequence

from raysys.families.flexconv.legacy.flags import translate_command
from raysys.legacy.registry import Translation, register_translator


@register_translator("run_crossres.py")
def translate_run_crossres(args: Sequence[str]) -> Translation:
    return translate_command("run_crossres.py", args, cross_res=True)
