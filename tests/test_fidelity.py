"""The deviation table (docs/fidelity.md) and the defaults it promises."""
from __future__ import annotations

import re
from pathlib import Path

from raysys.config import load_config
from raysys.config.loader import list_presets

FIDELITY = Path(__file__).resolve().parents[1] / "docs" / "fidelity.md"
SECTIONS = ("All families", "FlexConv / CKConv", "MIMOConv", "Antialiased CNNs", "Scale equivariance (STIR)")


def _tables() -> dict:
    """Section title -> its table's rows (each a list of 5 cells)."""
    tables, title = {}, None
    for line in FIDELITY.read_text().splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            tables[title] = []
        elif title and line.startswith("|") and not line.startswith("|---") and not line.startswith("| Topic"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            tables[title].append(cells)
    return tables


def test_every_paper_preset_trains_in_the_originals_fp32():
    autocast = [p.name for p in list_presets() if load_config(p.name).train.amp]
    assert not autocast, f"presets under fp16 autocast: {autocast}"


def test_the_table_has_a_section_with_rows_for_every_family():
    tables = _tables()
    for section in SECTIONS:
        assert tables.get(section), f"docs/fidelity.md has no rows under '## {section}'"
        for cells in tables[section]:
            assert len(cells) == 5 and all(cells), f"{section}: a row needs all 5 cells: {cells}"


def test_every_option_the_table_names_is_a_config_key():
    """Each `section.key=value` in the table must be accepted by the config loader."""
    presets = {p.paper: p.name for p in list_presets()}
    refused = []
    for section, rows in _tables().items():
        for cells in rows:
            for key, value in re.findall(r"`([a-z_]+(?:\.[a-z_0-9]+)+)=([^`\s]*)`", " ".join(cells)):
                if not any(_accepts(preset, f"{key}={value}") for preset in presets.values()):
                    refused.append(f"{section}: {key}={value}")
    assert not refused, refused


def _accepts(preset: str, override: str) -> bool:
    try:
        load_config(preset, [override])
    except Exception:
        return False
    return True
