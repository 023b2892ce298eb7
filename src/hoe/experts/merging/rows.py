"""Row-wise helpers the magnitude-based merge methods share (TIES trims, PCB clips and rescales)."""

from __future__ import annotations

import torch


def row_kth(x: torch.Tensor, k: int) -> torch.Tensor:
    """Per-row k-th smallest value (1-based, k clamped to [1, d]) of a ``(n, d)`` tensor -> ``(n, 1)``."""
    k = max(1, min(x.shape[1], k))
    return torch.kthvalue(x, k, dim=1, keepdim=True).values


def minmax_rows(x: torch.Tensor) -> torch.Tensor:
    """Rescale every row of ``(n, d)`` to [0, 1]; a constant row becomes 0."""
    lo = x.min(dim=1, keepdim=True).values
    hi = x.max(dim=1, keepdim=True).values
    return (x - lo) / (hi - lo).clamp_min(torch.finfo(x.dtype).tiny)
