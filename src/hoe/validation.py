"""Checks of config dataclass fields, collected so that every bad option is reported at once.

A check is ``check(config) -> HoEError | None``; :func:`validate` runs a list of them and raises them
together (:func:`hoe.errors.raise_all`). Numbers must be finite: ``inf`` is never a sensible option.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable

from hoe.errors import ConfigError, HoEError, bad_value, raise_all

Check = Callable[[object], HoEError | None]


def validate(config: object, checks: Iterable[Check]) -> None:
    raise_all([check(config) for check in checks])


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive(name: str, what: str) -> Check:
    """``name`` is a finite number > 0."""

    def check(c: object) -> HoEError | None:
        value = getattr(c, name)
        return (
            None
            if _number(value) and value > 0
            else bad_value(name, value, f"Pass a finite, positive {what}.")
        )

    return check


def at_least(name: str, low: float, what: str) -> Check:
    """``name`` is a finite number >= ``low``."""

    def check(c: object) -> HoEError | None:
        value = getattr(c, name)
        ok = _number(value) and value >= low
        return None if ok else bad_value(name, value, f"Pass {what}: a finite number >= {low:g}.")

    return check


def one_of(name: str, choices: Collection[str]) -> Check:
    """``name`` is one of ``choices``, read when the check runs: pass a registry itself (not a list of it) so
    that entries registered after import are accepted."""

    def check(c: object) -> HoEError | None:
        value = getattr(c, name)
        try:
            ok = value in choices
        except TypeError:  # an unhashable value (a list) looked up in a registry
            ok = False
        return None if ok else bad_value(name, value, f"Choose one of {sorted(choices)}.")

    return check


def not_both(a: str, b: str) -> Check:
    def check(c: object) -> HoEError | None:
        if getattr(c, a) and getattr(c, b):
            return ConfigError(f"conflicts with {b}.", field=a, fix="Pass one of them, not both.")
        return None

    return check


def non_empty(name: str, what: str) -> Check:
    def check(c: object) -> HoEError | None:
        value = getattr(c, name)
        return None if str(value).strip() else ConfigError("is empty.", field=name, fix=f"Pass {what}.")

    return check


def whole_at_least(name: str, low: int, what: str) -> Check:
    """``name`` is an int (not a bool) >= ``low``."""

    def check(c: object) -> HoEError | None:
        value = getattr(c, name)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        return None if ok else bad_value(name, value, f"Pass {what}: a whole number >= {low}.")

    return check
