"""The merge-method registry and the options a method declares (:mod:`hoe.experts.merging` explains both);
the built-in methods import it."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from hoe.errors import ConfigError
from hoe.registry import Registry

MergeFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Option:
    """One numeric option of a merge method: its default and valid range ``lo .. hi`` (None: unbounded);
    ``lo_open`` / ``hi_open`` exclude that end. NaN and ±inf are never valid."""

    name: str
    default: float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    help: str = ""

    @property
    def range(self) -> str:
        """The range in interval notation: ``(0, 1]``, ``[0, 0.5)``, ``(0, inf)``."""
        lo = "(-inf" if self.lo is None else f"{'(' if self.lo_open else '['}{self.lo:g}"
        hi = "inf)" if self.hi is None else f"{self.hi:g}{')' if self.hi_open else ']'}"
        return f"{lo}, {hi}"

    def check(self, value: object, method: str) -> float:
        """``value`` as a float, or a :class:`ConfigError` naming this option, its range and ``method``."""
        fix = f"Pass a number in {self.range} for {method} (default {self.default:g})."
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"got {value!r}, not a number.", field=self.name, value=value, fix=fix)
        x = float(value)
        if not math.isfinite(x):
            raise ConfigError(f"got {value!r}, not a finite number.", field=self.name, value=value, fix=fix)
        if not self._inside(x):
            raise ConfigError(f"got {value!r}, outside {self.range}.", field=self.name, value=value, fix=fix)
        return x

    def _inside(self, x: float) -> bool:
        above = self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)
        below = self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)
        return above and below


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge function and the options it declares."""

    name: str
    fn: MergeFn
    options: tuple[Option, ...]

    def __call__(self, deltas: torch.Tensor, weights: torch.Tensor, **options: float) -> torch.Tensor:
        return self.fn(deltas, weights, **options)

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


MERGE_METHODS: Registry[MergeMethod] = Registry("method")
get_merge_method = MERGE_METHODS.lookup


def register_merge(name: str, options: Sequence[Option] = ()) -> Callable[[MergeFn], MergeFn]:
    """Register ``fn`` as merge method ``name`` with its declared ``options``; returns ``fn`` unchanged.

    The declared options must be exactly the function's keyword parameters after ``(deltas, weights)``, with
    the same defaults: the spec is what users are checked against, so it must not drift from the code.
    """

    def deco(fn: MergeFn) -> MergeFn:
        params = list(inspect.signature(fn).parameters.values())[2:]
        declared = {o.name: o.default for o in options}
        if declared != {p.name: p.default for p in params}:
            raise TypeError(f"merge method {name!r}: declared options {declared} differ from {fn.__name__}'s")
        MERGE_METHODS.register(name)(MergeMethod(name, fn, tuple(options)))
        return fn

    return deco


def resolve_options(method: str, options: Mapping[str, object]) -> dict[str, float]:
    """``options`` checked against ``method``'s declared ones, with defaults filled in (what gets recorded).

    An option ``method`` does not take is refused with the methods that do take it; so is a value out of its
    range, NaN or inf. Call before any work.
    """
    spec = get_merge_method(method)
    for name in options:
        if spec.option(name) is None:
            raise _not_an_option(name, options[name], spec)
    return {
        o.name: o.check(options[o.name], method) if o.name in options else o.default for o in spec.options
    }


def methods_taking(option: str) -> list[str]:
    """Names of the registered methods that declare ``option``."""
    return sorted(m.name for m in MERGE_METHODS.values() if m.option(option) is not None)


def _not_an_option(name: str, value: object, spec: MergeMethod) -> ConfigError:
    takers = methods_taking(name)
    where = f"it applies to method {' or '.join(takers)}" if takers else "no merge method takes it"
    own = f"{spec.name} takes {', '.join(o.name for o in spec.options) or 'no option'}"
    fix = f"Drop it or choose {' or '.join(takers)} ({own})." if takers else f"Drop it ({own})."
    return ConfigError(
        f"method {spec.name} takes no option {name!r}; {where}.", field=name, value=value, fix=fix
    )


def option_help(name: str) -> str:
    """CLI help for a merge option, from the declared specs: what it does, for which methods, range, default."""
    by_spec: dict[str, list[str]] = {}  # "range, default" -> methods declaring the option so
    text = ""
    for method in sorted(MERGE_METHODS.values(), key=lambda m: m.name):
        o = method.option(name)
        if o is not None:
            text = text or o.help
            by_spec.setdefault(f"{o.range}, default {o.default:g}", []).append(method.name)
    ranges = "; ".join(f"{', '.join(ms)}: {spec}" for spec, ms in by_spec.items())
    return f"{text} ({ranges})."
