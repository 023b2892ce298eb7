"""Preference vectors λ: parsing and validation (see :mod:`hoe.conventions`).

A preference can be written as

* a string ``"helpful=0.6,harmless=0.4"`` (names; objectives left out get weight 0) or ``"0.6,0.4"``
  (one weight per objective, in order);
* a mapping ``{"helpful": 0.6, "harmless": 0.4}``;
* a sequence or 1-D tensor of N weights;
* for a batch, a ``B x N`` tensor or a list of any of the above, one per row.

Weights must be finite and non-negative with a positive sum; a vector that does not sum to 1 is divided by
its sum. Anything else raises :class:`~hoe.errors.PreferenceError` naming the field.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence

import torch

from hoe.errors import PreferenceError, bad_value

PreferenceLike = str | Mapping[str, float] | Sequence[float] | torch.Tensor
"""A preference, or any vector over the objectives, as a caller may write it (see the module's docstring)."""
Preference = str | dict[str, float] | list[float]
"""The same as a config file or a flag holds it (JSON-friendly: the config dataclasses' field type)."""


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity)|nan", re.IGNORECASE)
"""A weight as text: a plain decimal or scientific number (``0.5``, ``.5``, ``5e-1``). Not Python's
``1_0`` (that would read as 10); ``inf``/``nan`` parse so that :func:`to_simplex` can say they are not finite."""

HOW = "Write it like helpful=0.6,harmless=0.4 or 0.6,0.4."


def parse_preference_text(text: str, field: str = "preference") -> dict[str, float] | list[float]:
    """Parse ``"a=0.6,b=0.4"`` into a dict or ``"0.6,0.4"`` into a list of floats.

    Every comma-separated item must hold something: ``"0.5,,0.5"`` is refused, naming the empty item.
    """
    items = [p.strip() for p in text.split(",")]
    if not any(items):
        raise bad_value(field, text, HOW, PreferenceError)
    for i, item in enumerate(items):
        if not item:
            raise _bad_item(field, text, i, len(items), "is empty", "Give one weight per item.")
    named = ["=" in p for p in items]
    if any(named) and not all(named):
        raise bad_value(
            field, text, "Either name every weight (a=0.6,b=0.4) or none (0.6,0.4).", PreferenceError
        )
    if not all(named):
        return [_weight(p, field, text, i, len(items)) for i, p in enumerate(items)]
    out: dict[str, float] = {}
    for i, item in enumerate(items):
        name, _, weight = (s.strip() for s in item.partition("="))
        if not name:
            raise _bad_item(field, text, i, len(items), "has no objective name", "Write NAME=WEIGHT.")
        if name in out:
            raise bad_value(field, text, f"Objective {name!r} is given twice.", PreferenceError)
        out[name] = _weight(weight, field, text, i, len(items))
    return out


def _weight(item: str, field: str, text: str, i: int, n: int) -> float:
    if not item:
        raise _bad_item(field, text, i, n, "has no weight", "Write NAME=WEIGHT.")
    if not _NUMBER.fullmatch(item):
        raise _bad_item(
            field,
            text,
            i,
            n,
            f"has weight {item!r}, not a number",
            "Write plain numbers such as 0.6 or 1e-3.",
        )
    return float(item)


def _bad_item(field: str, text: str, i: int, n: int, what: str, fix: str) -> PreferenceError:
    return PreferenceError(f"got {text!r}: item {i + 1} of {n} {what}.", field=field, value=text, fix=fix)


def to_simplex(pref: PreferenceLike, names: Sequence[str], field: str = "preference") -> torch.Tensor:
    """Validate one preference against the objective ``names`` and return it on the simplex, shape (N,)."""
    if pref is None:
        raise PreferenceError(
            "a preference is required.",
            field=field,
            value=None,
            fix=f"Pass one weight per {_objectives(names)}.",
        )
    if isinstance(pref, str):
        pref = parse_preference_text(pref, field)
    if isinstance(pref, Mapping):
        unknown = [k for k in pref if k not in names]
        if unknown:
            raise bad_value(
                field,
                dict(pref),
                f"Unknown objective(s) {unknown}; valid names: {list(names)}.",
                PreferenceError,
            )
        values = [_number(pref.get(n, 0.0), field, pref) for n in names]
    else:
        values = [_number(v, field, pref) for v in _vector(pref, names, field)]
    return _check(values, names, field, pref)


def _vector(pref: object, names: Sequence[str], field: str) -> list:
    """The entries of a sequence or 1-D tensor of weights."""
    if isinstance(pref, (list, tuple)) and all(not isinstance(v, (list, tuple, Mapping)) for v in pref):
        return list(pref)  # each checked by _number (an int beyond float range is not a vector problem)
    try:
        t = pref if isinstance(pref, torch.Tensor) else torch.as_tensor(pref, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        t = None
    if t is None or t.dim() != 1:
        raise bad_value(
            field, _short(pref), f"One preference must be a vector of {len(names)} weights.", PreferenceError
        )
    return t.tolist()


def _number(v: object, field: str, raw: object) -> float:
    if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.dtype.is_complex:
        v = v.item()  # a list of 0-d tensors, e.g. list(tensor)
    if isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
        return float(v)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise bad_value(field, _short(raw), f"Weight {v!r} is not a number.", PreferenceError)
    try:
        return float(v)
    except OverflowError:  # an int beyond float range, e.g. 10**400
        raise bad_value(
            field, _short(raw), "Weights must be finite numbers (no NaN or Inf).", PreferenceError
        ) from None


def _objectives(names: Sequence[str]) -> str:
    example = ",".join(f"{n}={1 / len(names):.2g}" for n in names) if names else "..."
    return f"objective {list(names)}, e.g. {example}"


def to_simplex_batch(
    pref: PreferenceLike | Sequence[PreferenceLike],
    names: Sequence[str],
    batch_size: int | None = None,
    field: str = "preference",
) -> torch.Tensor:
    """Validate one preference for a whole batch, or one per row; return ``(B, N)`` (or ``(1, N)``) float64.

    A single preference gives a ``(1, N)`` tensor that broadcasts over the batch.
    """
    if isinstance(pref, torch.Tensor) and pref.dim() == 2:
        rows: list = list(pref)
    elif isinstance(pref, (list, tuple)) and pref and not isinstance(pref[0], numbers.Real):
        rows = list(pref)
    else:
        return to_simplex(pref, names, field).unsqueeze(0)  # type: ignore[arg-type]
    if batch_size is not None and len(rows) not in (1, batch_size):
        raise bad_value(
            field,
            f"{len(rows)} preferences",
            f"Give one preference for the batch or one per row ({batch_size} rows).",
            PreferenceError,
        )
    return torch.stack([to_simplex(r, names, f"{field}[{i}]") for i, r in enumerate(rows)])


def _check(values: list[float], names: Sequence[str], field: str, raw: object) -> torch.Tensor:
    if len(values) != len(names):
        raise bad_value(
            field,
            _short(raw),
            f"Expected {len(names)} weights, one per objective {list(names)}.",
            PreferenceError,
        )
    if any(not math.isfinite(v) for v in values):
        raise bad_value(
            field, _short(raw), "Weights must be finite numbers (no NaN or Inf).", PreferenceError
        )
    if any(v < 0 for v in values):
        raise bad_value(field, _short(raw), "Weights must be non-negative.", PreferenceError)
    largest = max(values)
    if largest <= 0:
        raise bad_value(field, _short(raw), "At least one weight must be positive.", PreferenceError)
    # divided by the largest first: the sum of finite weights can overflow (1e308 + 1e308 = inf, and w / inf
    # = 0 for every w), a sum of numbers in [0, 1] cannot; (1e308, 1e308, 0) is (0.5, 0.5, 0) as it should be
    scaled = torch.tensor(values, dtype=torch.float64) / largest
    return scaled / scaled.sum()


def _short(x: object) -> object:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return x


MAX_LATTICE = 10_000
"""The most preferences a lattice may hold: each is a whole evaluation point (minutes of decoding)."""


def objective_vector(given: PreferenceLike, names: Sequence[str], field: str) -> torch.Tensor:
    """Any finite vector over the objectives (a reference point, a target z*), (m,) float64, written like a
    preference (``"a=0,b=-0.5"``, ``"0,-0.5"``, a mapping, a list) but not put on the simplex: values may be
    negative and need not sum to 1. A mapping names every objective."""
    values = parse_preference_text(given, field) if isinstance(given, str) else given
    names = list(names)
    if isinstance(values, Mapping):
        missing = [n for n in names if n not in values]
        unknown = [k for k in values if k not in names]
        if missing or unknown:
            raise bad_value(
                field, given, f"Give one value per objective {names} (missing {missing}, unknown {unknown})."
            )
        values = [values[n] for n in names]
    try:
        t = torch.as_tensor([float(v) for v in values], dtype=torch.float64)
    except (TypeError, ValueError, OverflowError):
        raise bad_value(field, given, f"Give one number per objective {names}.") from None
    if t.shape != (len(names),) or not torch.isfinite(t).all():
        raise bad_value(field, given, f"Give one finite number per objective {names}.")
    return t


def _compositions(total: int, parts: int):
    """The ways to write ``total`` as ``parts`` non-negative integers, in lexicographically decreasing order."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def simplex_lattice(m: int, divisions: int) -> torch.Tensor:
    """Every λ on the simplex whose entries are multiples of ``1 / divisions``: (C(divisions + m - 1, m - 1), m).

    m = 3 objectives with step 1/4 (divisions 4) gives the 15 points of BENCH.md §1, vertices first, in
    lexicographically decreasing order; float64.
    """
    if m < 1 or divisions < 1:
        field, value = ("m", m) if m < 1 else ("divisions", divisions)
        raise bad_value(field, value, "Pass at least 1 (objectives and lattice divisions).", PreferenceError)
    count = math.comb(divisions + m - 1, m - 1)
    if count > MAX_LATTICE:
        raise bad_value(
            "grid",
            divisions,
            f"The lattice would hold {count} preferences for {m} objectives (at most {MAX_LATTICE}); pass a "
            "smaller grid, or --preference for the points you need.",
            PreferenceError,
        )
    points = list(_compositions(divisions, m))  # (k, m), built directly (never a product over divisions^m)
    lattice = torch.tensor(points, dtype=torch.float64) / divisions
    vertex = (lattice == 1).any(-1)
    return torch.cat([lattice[vertex], lattice[~vertex]])
