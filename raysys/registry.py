"""One small registry class for every kind: models, datasets, recipes, optimizers, ..."""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterable, List, Optional, Tuple, TypeVar, Union

from raysys import families
from raysys.errors import ConfigError, one_of

T = TypeVar("T")

# config key -> registry whose names are the allowed values of that key
_CHOICE_KEYS: Dict[str, "Registry"] = {}


class Registry(Generic[T]):
    """Names to objects, with aliases and errors that suggest close matches.

    ``config_key`` (one dotted key or several) ties the registry to config values: the
    config loader then refuses any value of those keys (or any item of a list value) that is
    not a registered name.

    Every lookup first makes sure the families are discovered (:func:`raysys.families.discover`),
    so the registry is complete whatever was imported first. ``discover=False`` is for
    registries no family adds to (CLI commands, benchmarks, reports), whose lookups must stay cheap.
    Each entry remembers the module that registered it; :meth:`family` names its family.
    """

    def __init__(self, kind: str, config_key: Union[str, Tuple[str, ...], None] = None, *, discover: bool = True):
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._aliases: Dict[str, str] = {}
        self._modules: Dict[str, Optional[str]] = {}
        self._discover = discover
        for key in (config_key,) if isinstance(config_key, str) else (config_key or ()):
            _CHOICE_KEYS[key] = self

    def register(self, name: str, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        def add(obj: T) -> T:
            self.add(name, obj, aliases)
            return obj

        return add

    def add(self, name: str, obj: T, aliases: Iterable[str] = ()) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj
        self._modules[name] = families.registering_module(2)
        for alias in aliases:
            self._aliases[alias] = name

    def _complete(self) -> None:
        if self._discover:
            families.discover()

    def canonical(self, name: str) -> str:
        self._complete()
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise ConfigError(f"unknown {self.kind}: {one_of(name, self.names())}")

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def family(self, name: str) -> Optional[str]:
        """The family that registered ``name`` (raysys/families/<family>), or None if shared."""
        return families.family_of(self._modules.get(self.canonical(name)))

    def __contains__(self, name: str) -> bool:
        self._complete()
        return name in self._items or name in self._aliases

    def names(self) -> List[str]:
        self._complete()
        return sorted(self._items)

    def items(self):
        self._complete()
        return sorted(self._items.items())

    def all_names(self) -> List[str]:
        self._complete()
        return sorted(set(self._items) | set(self._aliases))


def choice_keys() -> Dict[str, Registry]:
    """Config keys whose values must name an entry of a registry (every family's, once discovered)."""
    families.discover()
    return dict(_CHOICE_KEYS)
