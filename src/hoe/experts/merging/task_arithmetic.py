"""Task arithmetic (Ilharco et al., 2023): the preference-weighted sum of task vectors."""

from __future__ import annotations

import torch

from hoe.experts.merging.base import Option, register_merge


@register_merge(
    "task_arithmetic",
    options=[Option("scale", 1.0, 0.0, None, lo_open=True, help="Factor applied to the merged delta")],
)
def task_arithmetic(deltas: torch.Tensor, weights: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """τ = scale · Σ_i λ_i τ_i.   deltas: (n, ...), weights: (n,) -> (...).

    With λ on the simplex and scale 1 this is the Rewarded-Soups / linear-soup delta at λ (METHOD.md Eq. 3).
    """
    w = weights.to(deltas.dtype).view(-1, *([1] * (deltas.dim() - 1)))
    return scale * (w * deltas).sum(0)
