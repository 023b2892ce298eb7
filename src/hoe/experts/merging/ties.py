"""TIES-merging (Yadav et al., NeurIPS 2023): trim, elect sign, disjoint mean."""

from __future__ import annotations

import torch

from hoe.experts.merging.base import Option, register_merge
from hoe.experts.merging.rows import row_kth


@register_merge(
    "ties",
    options=[
        Option("density", 0.2, 0.0, 1.0, lo_open=True, help="Fraction of entries each expert keeps"),
        Option("scale", 1.0, 0.0, None, lo_open=True, help="Factor applied to the merged delta"),
    ],
)
def ties(
    deltas: torch.Tensor, weights: torch.Tensor, density: float = 0.2, scale: float = 1.0
) -> torch.Tensor:
    """TIES with preference weights.   deltas: (n, ...), weights λ: (n,) -> (...).

    1. trim: keep the ``density`` fraction (at least one) of largest |τ_i| entries of each expert, zero the
       rest -> τ̂_i;
    2. elect: γ = sign(Σ_i λ_i τ̂_i) (the weighted mass decides each entry's sign);
    3. disjoint mean: τ = scale · Σ_i λ_i τ̂_i [sign τ̂_i = γ] / Σ_i λ_i [sign τ̂_i = γ]  (0 where no one agrees).
    """
    n = deltas.shape[0]
    flat = deltas.reshape(n, -1)  # (n, d)
    # entries trimmed per expert; at least one is kept, so a tiny density never yields an all-zero expert
    dropped = flat.shape[1] - max(1, int(flat.shape[1] * density))
    if dropped > 0:
        cutoff = row_kth(flat.abs(), dropped)  # (n, 1); entries above it are the top `density`
        flat = torch.where(flat.abs() > cutoff, flat, torch.zeros((), dtype=flat.dtype))
    w = weights.to(flat.dtype)[:, None]  # (n, 1)
    elected = torch.sign((w * flat).sum(0))  # (d,)
    agree = (torch.sign(flat) == elected) & (flat != 0)  # (n, d)
    num = (w * flat * agree).sum(0)
    den = (w * agree).sum(0)
    merged = torch.where(
        den > 0, num / den.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros((), dtype=flat.dtype)
    )
    return scale * merged.view(deltas.shape[1:])
