"""Merge methods for multi-objective LoRA experts (METHOD.md §2(a).2), in a registry.

A merge method is a pure function ``fn(deltas, weights, **options) -> merged`` where ``deltas`` stacks the
experts' full weight deltas ΔW_i = B_i A_i of one module, shape ``(n, out, in)``, and ``weights`` is the
preference λ over those experts, shape ``(n,)``, on the simplex. Methods act on full deltas, never on the
factors A and B separately (B_1 A_1 + B_2 A_2 ≠ (B_1 + B_2)(A_1 + A_2)).

They are applied module by module (per weight matrix, as mergekit does), not on one vector flattened over the
whole model as in the authors' script: quantiles are taken per matrix, which keeps memory at one matrix per
expert. Add a method by adding a module here that decorates its function with :func:`register_merge` (from
:mod:`hoe.experts.merging.base`), declaring its options (name, default, valid range) as mergekit's methods do,
and importing it below; an option is then checked against the chosen method before any work: one that does not
apply, or lies out of range, is refused rather than ignored or turned into an all-zero expert.
"""

from hoe.experts.merging import pcb, task_arithmetic, ties  # noqa: F401  (registers the methods)
from hoe.experts.merging.base import (
    MERGE_METHODS,
    MergeFn,
    MergeMethod,
    Option,
    get_merge_method,
    methods_taking,
    option_help,
    register_merge,
    resolve_options,
)

__all__ = [
    "MERGE_METHODS",
    "MergeFn",
    "MergeMethod",
    "Option",
    "get_merge_method",
    "methods_taking",
    "option_help",
    "register_merge",
    "resolve_options",
]
