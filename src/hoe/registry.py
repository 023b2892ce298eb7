"""Registries of pluggable parts (merge methods, scalarisations, objective kinds): add one with a decorator.

A :class:`Registry` is a ``dict`` from names to functions or factories, with ``register(name)`` as decorator
and ``lookup(name)``, whose error names the CLI flag and lists what is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from hoe.errors import ConfigError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """``name -> T``; ``flag`` is the option that picks an entry (used in error messages)."""

    def __init__(self, flag: str):
        super().__init__()
        self.flag = flag

    def register(self, name: str) -> Callable[[T], T]:
        def deco(entry: T) -> T:
            self[name] = entry
            return entry

        return deco

    def lookup(self, name: str) -> T:
        try:
            return self[name]
        except KeyError:
            raise ConfigError(f"--{self.flag}: got {name!r}. Choose one of {sorted(self)}.") from None
