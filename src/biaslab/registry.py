"""Plain dict registries: a name, the object, and a one-line description for `biaslab list`.

Each registry fills itself, on its first lookup, by importing the modules ``catalog.py`` lists
for its kind (each module registers its entries when imported). Registering never needs the
lookup, so the modules may import this one freely.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False

    def load(self) -> None:
        """Import every module the catalog lists for this kind (once)."""
        if self._loaded:
            return
        self._loaded = True  # first: a listed module may look names up while it is imported
        from .catalog import MODULES

        for module in MODULES.get(self.kind, []):
            importlib.import_module(module)

    def register(self, name: str, description: str):
        """Decorator: register ``obj`` under ``name``."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = Entry(name, obj, description)
            return obj

        return deco

    def add(self, name: str, obj: T, description: str) -> None:
        self.register(name, description)(obj)

    def get(self, name: str) -> T:
        self.load()
        if name not in self._entries:
            raise InputError(self.kind, f"unknown {self.kind} {name!r}", ", ".join(self.names()))
        return self._entries[name].obj

    def names(self) -> list[str]:
        self.load()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: Any) -> bool:
        self.load()
        return name in self._entries


TASKS: Registry = Registry("task")
MODELS: Registry = Registry("model")
MEASURES: Registry = Registry("measure")
EXPERIMENTS: Registry = Registry("experiment")
CLAIMS: Registry = Registry("claim")


def load_all() -> None:
    """Fill every registry from the catalog now (idempotent; lookups do it on their own)."""
    for registry in (TASKS, MODELS, MEASURES, EXPERIMENTS, CLAIMS):
        registry.load()
