"""TIES-merging (Yadav et al., NeurIPS 2023): trim, elect sign, disjoint mean."""

from __future__ import annotations

import torch

from hoe.experts.merging import register_merge, row_kth


@register_merge("ties")
def ties(
    deltas: torch.Tensor, weights: torch.Tensor, density: float = 0.2, scale: float = 1.0
) -> torch.Tensor:
    """TIES with preference weights.   deltas: (n, ...), weights λ: (n,) -> (...).

    1. trim: keep the ``density`` fraction of largest |τ_i| entries of each expert, zero the rest -> τ̂_i;
    2. elect: γ = sign(Σ_i λ_i τ̂_i) (the weighted mass decides each entry's sign);
    3. disjoint mean: τ = scale · Σ_i λ_i τ̂_i [sign τ̂_i = γ] / Σ_i λ_i [sign τ̂_i = γ]  (0 where no one agrees).
    """
    n = deltas.shape[0]
    flat = deltas.reshape(n, -1)  # (n, d)
    dropped = flat.shape[1] - int(flat.shape[1] * density)  # entries trimmed per expert
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
