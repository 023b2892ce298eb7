"""Merge methods for multi-objective LoRA experts (METHOD.md §2(a).2), in a registry.

A merge method is a pure function ``fn(deltas, weights, **options) -> merged`` where ``deltas`` stacks the
experts' full weight deltas ΔW_i = B_i A_i of one module, shape ``(n, out, in)``, and ``weights`` is the
preference λ over those experts, shape ``(n,)``, on the simplex. Methods act on full deltas, never on the
factors A and B separately (B_1 A_1 + B_2 A_2 ≠ (B_1 + B_2)(A_1 + A_2)).

They are applied module by module (per weight matrix, as mergekit does), not on one vector flattened over the
whole model as in the authors' script: quantiles are taken per matrix, which keeps memory at one matrix per
expert. Add a method by adding a module here that decorates its function with :func:`register_merge`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hoe.registry import Registry

MergeFn = Callable[..., torch.Tensor]
MERGE_METHODS: Registry[MergeFn] = Registry("method")
register_merge = MERGE_METHODS.register
get_merge_method = MERGE_METHODS.lookup


def row_kth(x: torch.Tensor, k: int) -> torch.Tensor:
    """Per-row k-th smallest value (1-based, k clamped to [1, d]) of a ``(n, d)`` tensor -> ``(n, 1)``."""
    k = max(1, min(x.shape[1], k))
    return torch.kthvalue(x, k, dim=1, keepdim=True).values


def minmax_rows(x: torch.Tensor) -> torch.Tensor:
    """Rescale every row of ``(n, d)`` to [0, 1]; a constant row becomes 0."""
    lo = x.min(dim=1, keepdim=True).values
    hi = x.max(dim=1, keepdim=True).values
    return (x - lo) / (hi - lo).clamp_min(torch.finfo(x.dtype).tiny)


from hoe.experts.merging import pcb, task_arithmetic, ties  # noqa: E402,F401  (registers the methods)
