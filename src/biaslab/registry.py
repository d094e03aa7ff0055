"""Plain dict registries: a name, the object, and a one-line description for `biaslab list`."""

from __future__ import annotations

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
        if name not in self._entries:
            raise InputError(self.kind, f"unknown {self.kind} {name!r}", ", ".join(self.names()))
        return self._entries[name].obj

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: Any) -> bool:
        return name in self._entries


TASKS: Registry = Registry("task")
MODELS: Registry = Registry("model")
MEASURES: Registry = Registry("measure")
EXPERIMENTS: Registry = Registry("experiment")
CLAIMS: Registry = Registry("claim")


def load_all() -> None:
    """Import every module that registers something (idempotent)."""
    from . import tasks, models, measure, experiments  # noqa: F401
