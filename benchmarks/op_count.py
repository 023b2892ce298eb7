"""Counting the tensor ops a call dispatches: the CPU proxy of decoding cost (BENCH.md §3).

On a GPU at small batch, decoding is launch-bound: each aten op is at least one kernel launch, so the number
of ops per decoded token predicts tokens/s. :class:`OpCounter` counts every leaf aten op that reaches the
dispatcher below autograd (the ops that run kernels), except views and allocations, which launch none.
:func:`ops_per_decode_step` takes the difference between generating ``n + 1`` and 1 new tokens, which
leaves the prompt's prefill and per-call set-up out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_FREE = {
    "empty",
    "empty_like",
    "empty_strided",
    "new_empty",
    "new_empty_strided",  # allocations
    "lift_fresh",
    "detach",
    "_unsafe_view",
    "_reshape_alias",  # aliases not marked as views
}
"""Ops that allocate or alias without a kernel that touches the data."""


class OpCounter(TorchDispatchMode):
    """``with OpCounter() as c: ...`` then ``c.counts`` (op name -> calls) and ``c.total``."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.removeprefix("aten::")
        if not (func.is_view or name in _FREE):
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def count_ops(fn: Callable[[], object]) -> Counter[str]:
    """The ops ``fn()`` dispatches (see :class:`OpCounter`)."""
    with OpCounter() as counter:
        fn()
    return counter.counts


def ops_per_decode_step(generate: Callable[[int], object], steps: int = 8) -> float:
    """Ops per decoded token: (ops of ``generate(steps + 1)`` − ops of ``generate(1)``) / ``steps``, where
    ``generate(n)`` decodes exactly n new tokens (greedy, no early stop). An uncounted call comes first, so
    that both counted calls start from the state a call of their own kind leaves (e.g. a layer's A rows
    already unscaled after a call with one λ)."""
    with torch.no_grad():
        generate(1)
        short = sum(count_ops(lambda: generate(1)).values())
        long = sum(count_ops(lambda: generate(steps + 1)).values())
    return (long - short) / steps
