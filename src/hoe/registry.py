"""Registries of pluggable parts (merge methods, scalarisations, objective kinds): add one with a decorator.

A :class:`Registry` is a ``dict`` from names to functions, factories or specs, with ``register(name)`` as
decorator and ``lookup(name)``, whose error names the field that picks an entry and lists what is registered.
What an entry declares beyond its name (a merge method's options, say) lives in the entry itself, so the
registry stays generic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from hoe.errors import bad_value

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """``name -> T``; ``field`` is the argument that picks an entry (``"method"``), named in errors."""

    def __init__(self, field: str):
        super().__init__()
        self.field = field

    def register(self, name: str) -> Callable[[T], T]:
        def deco(entry: T) -> T:
            self[name] = entry
            return entry

        return deco

    def lookup(self, name: str) -> T:
        try:
            return self[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name such as a list
            raise bad_value(self.field, name, f"Choose one of {sorted(self)}.") from None
