"""Config keys that moved or were added: old configs keep loading, old runs keep matching.

A family declares, in its config module, each key (or whole section) it renamed with
:func:`rename` and each key it added since runs were first recorded with :func:`added_key`.
Then:

- an old dotted name on the command line, in a preset file or in a saved config is read as
  the new one (:func:`upgrade_key`, :func:`upgrade_tree`), with a one-line note on stderr;
- :func:`legacy_tree` gives a resolved config as runs recorded under the old names held it,
  so their fingerprint (raysys/track/identity.py) and run name still match. A shared field that
  moved into a family (:func:`moved_to_family`) is put back at its default there.
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional

from raysys.config import schema


@dataclass(frozen=True)
class Rename:
    """Dotted ``old`` (a section or key) is now dotted ``new``."""

    old: str
    new: str


@dataclass(frozen=True)
class AddedKey:
    """Key ``key`` did not exist before; runs recorded without it behaved as ``legacy``.

    ``inert(tree)`` says the key changes nothing for that config (any value then matches
    an old run): e.g. a cross-resolution option in a run without cross-resolution.
    """

    key: str
    legacy: Any
    inert: Optional[Callable[[Mapping[str, Any]], bool]] = None


@dataclass(frozen=True)
class MovedKey:
    """Key ``key`` was a field of a shared section in every run's config; now only a family's runs hold it."""

    key: str
    value: Any  # its default, which every run that did not use the family recorded


RENAMES: List[Rename] = []
ADDED: List[AddedKey] = []
MOVED: List[MovedKey] = []


def rename(old: str, new: str) -> None:
    """Declare that config key (or section) ``old`` is now ``new``."""
    if Rename(old, new) not in RENAMES:
        RENAMES.append(Rename(old, new))


def added_key(key: str, legacy: Any, inert: Optional[Callable[[Mapping[str, Any]], bool]] = None) -> None:
    """Declare ``key`` new, with the behaviour ``legacy`` that runs recorded before it had."""
    if all(a.key != key for a in ADDED):
        ADDED.append(AddedKey(key, legacy, inert))


def moved_to_family(key: str, value: Any) -> None:
    """Declare that shared key ``key`` (at default ``value`` for other runs) now belongs to a family."""
    if all(m.key != key for m in MOVED):
        MOVED.append(MovedKey(key, value))


def _under(dotted: str, prefix: str) -> bool:
    return dotted == prefix or dotted.startswith(prefix + ".")


def _swap(dotted: str, old: str, new: str) -> str:
    return new + dotted[len(old):]


def _renames() -> List[Rename]:
    schema.section_names()  # discovers the families, which declare their renames on import
    # An old name that is a live section again (another family's) is that section's, not a rename.
    live = set(schema.section_names())
    return [r for r in RENAMES if r.old.split(".", 1)[0] not in live]


def note(old: str, new: str, origin: str) -> None:
    print(f"note: config key {old!r}{f' in {origin}' if origin else ''} is now {new!r}; use the new name", file=sys.stderr)


def current_key(dotted: str) -> str:
    """The key's name now (``dotted`` itself unless renamed)."""
    for r in _renames():
        if _under(dotted, r.old):
            return _swap(dotted, r.old, r.new)
    return dotted


def legacy_key(dotted: str) -> str:
    """The name runs recorded before the renames gave this key."""
    for r in _renames():
        if _under(dotted, r.new):
            return _swap(dotted, r.new, r.old)
    return dotted


def upgrade_key(dotted: str, origin: str = "") -> str:
    """:func:`current_key`, with a note on stderr when the key was renamed."""
    new = current_key(dotted)
    if new != dotted:
        note(dotted, new, origin)
    return new


def _pop(tree: Dict[str, Any], dotted: str) -> Any:
    head, _, rest = dotted.partition(".")
    if not isinstance(tree, dict) or head not in tree:
        return _MISSING
    if not rest:
        return tree.pop(head)
    value = _pop(tree[head], rest)
    if isinstance(tree[head], dict) and not tree[head]:
        del tree[head]
    return value


def _put(tree: Dict[str, Any], dotted: str, value: Any) -> None:
    head, _, rest = dotted.partition(".")
    if rest:
        _put(tree.setdefault(head, {}), rest, value)
    elif isinstance(value, dict) and isinstance(tree.get(head), dict):
        tree[head] = {**value, **tree[head]}  # keys given under the new name win
    else:
        tree.setdefault(head, value)


class _Missing:
    pass


_MISSING = _Missing()


def _move(tree: Mapping[str, Any], pairs, origin: Optional[str]) -> Dict[str, Any]:
    out = copy.deepcopy(dict(tree))
    for source, target in pairs:
        value = _pop(out, source)
        if value is _MISSING:
            continue
        if origin is not None:
            note(source, target, origin)
        _put(out, target, value)
    return out


def upgrade_tree(tree: Mapping[str, Any], origin: Optional[str] = "") -> Dict[str, Any]:
    """A nested config (a preset layer, a saved config) with renamed keys under their new names.

    Each moved key is noted on stderr (``origin`` says where it came from); ``origin=None`` moves silently.
    """
    return _move(tree, [(r.old, r.new) for r in _renames()], origin)


def _select(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def legacy_tree(tree: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """``tree`` (resolved, current names) as a run recorded before the renames and added keys held it.

    None when no such run can exist: an added key is set to other than its legacy behaviour
    and matters for this config. ``tree`` itself when nothing was renamed or added.
    """
    for added in ADDED:
        value = _select(tree, added.key)
        if value is _MISSING or value == added.legacy or (added.inert is not None and added.inert(tree)):
            continue
        return None
    out = copy.deepcopy(dict(tree))
    for added in ADDED:
        _pop(out, added.key)
    for moved in MOVED:  # every run's config held them, at their default where the family was unused
        if _select(out, moved.key.rsplit(".", 1)[0]) is not _MISSING:
            _put(out, moved.key, moved.value)
    return _move(out, [(r.new, r.old) for r in _renames()], None)


# Shared keys added since runs were first recorded (a family declares its own in its config module).
added_key("data.jpeg_draft", False)
added_key("data.jpeg_device", "cpu")
