"""One small registry class for every kind: models, datasets, recipes, optimizers, ..."""
from __future__ import annotations

from typing import Callable, Dict, Generic, Iterable, List, Optional, TypeVar

from raysys.errors import ConfigError, one_of

T = TypeVar("T")

# config key -> registry whose names are the allowed values of that key
_CHOICE_KEYS: Dict[str, "Registry"] = {}


class Registry(Generic[T]):
    """Names to objects, with aliases and errors that suggest close matches.

    ``config_key`` ties the registry to a config value: the config loader then
    refuses any value of that key that is not a registered name.
    """

    def __init__(self, kind: str, config_key: Optional[str] = None):
        self.kind = kind
        self._items: Dict[str, T] = {}
        self._aliases: Dict[str, str] = {}
        if config_key:
            _CHOICE_KEYS[config_key] = self

    def register(self, name: str, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        def add(obj: T) -> T:
            self.add(name, obj, aliases)
            return obj

        return add

    def add(self, name: str, obj: T, aliases: Iterable[str] = ()) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj
        for alias in aliases:
            self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        if name in self._items:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise ConfigError(f"unknown {self.kind}: {one_of(name, self.names())}")

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._aliases

    def names(self) -> List[str]:
        return sorted(self._items)

    def items(self):
        return sorted(self._items.items())

    def all_names(self) -> List[str]:
        return sorted(set(self._items) | set(self._aliases))


def choice_keys() -> Dict[str, Registry]:
    """Config keys whose values must name an entry of a registry."""
    return dict(_CHOICE_KEYS)
