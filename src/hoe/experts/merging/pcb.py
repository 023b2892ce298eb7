"""PCB-merging (Du et al., NeurIPS 2024), Parameter Competition Balancing: the paper's Merge (METHOD.md §2(a).2)."""

from __future__ import annotations

import torch

from hoe.experts.merging.base import Option, register_merge
from hoe.experts.merging.rows import minmax_rows, row_kth


@register_merge(
    "pcb",
    options=[
        Option(
            "keep", 0.9, 0.0, 1.0, lo_open=True, help="Fraction of entries each expert keeps after balancing"
        ),
        Option("clip", 0.01, 0.0, 0.5, hi_open=True, help="Fraction of magnitudes clipped at each end"),
    ],
)
def pcb(deltas: torch.Tensor, weights: torch.Tensor, keep: float = 0.9, clip: float = 0.01) -> torch.Tensor:
    """PCB-merging with preference pre-weights.   deltas: (n, ...), weights λ: (n,) -> (...).

    With T_i = n·λ_i·τ_i flattened (the authors pre-weight by ≈ n·λ: [w, 2 − w] for two experts):

        T_c    = sign(T) · clamp(|T|, q_clip, q_{1-clip})           (no clip if d < 1/clip)
        intra  = exp(n · minmax(|T_c|)²)                                 (self-balancing)
        inter  = tanh(T ⊙ Σ_j T_j)                                       (cross-balancing)
        s      = minmax(max(intra ⊙ inter, q_{1-keep}))                  (drop: the lowest 1-keep share -> 0)
        τ      = Σ_i s_i ⊙ T_c,i / max(Σ_i s_i, 1e-12)

    Quantiles and min-max are per expert row over this module's entries.
    """
    n = deltas.shape[0]
    T = (n * weights.to(deltas.dtype))[:, None] * deltas.reshape(n, -1)  # (n, d)
    magnitude = T.abs()
    d = T.shape[1]
    cut = int(d * clip)  # entries clipped at each end (0 for d < 1/clip)
    clipped = magnitude.clamp(row_kth(magnitude, max(cut, 1)), row_kth(magnitude, d - cut))
    intra = torch.exp(n * minmax_rows(clipped).square())
    inter = torch.tanh(T * T.sum(0, keepdim=True))
    score = intra * inter
    floor = row_kth(score, int(d * (1.0 - keep)))  # (n, 1): the lowest (1 - keep) share is raised to it
    scale = minmax_rows(torch.maximum(score, floor))  # (n, d) in [0, 1]; the dropped share -> 0
    merged = (torch.sign(T) * clipped * scale).sum(0) / scale.sum(0).clamp_min(1e-12)
    return merged.view(deltas.shape[1:])
