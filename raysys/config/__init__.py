"""Typed configuration: schema, presets, dotted overrides."""
from raysys.config.loader import (
    flatten,
    from_container,
    list_presets,
    load_config,
    paper_titles,
    to_yaml,
)
from raysys.config.schema import config_section

__all__ = [
    "config_section",
    "flatten",
    "from_container",
    "list_presets",
    "load_config",
    "paper_titles",
    "to_yaml",
]
