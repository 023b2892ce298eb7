"""Level 2 of the hierarchy: router experts (METHOD.md §2(b).1).

A router expert owns one anchor preference λ⁽ᵉ⁾ and, in every adapted module, a tiny linear map from the
module's input x to scores over the E LoRA experts. Its output is a valid mixture:

    η(x) = softmax(W x + b)  restricted to the router's active experts (the rest get 0),

initialised with W = 0 and b = 1 (the authors' code), so the initial mixture is uniform over the active
experts. *Choice:* the authors divide the raw scores by their sum, which stops being a mixture as soon as a
score turns negative during training; softmax is always non-negative, sums to 1, and is shift-invariant, so the
b = 1 initialisation keeps its meaning. The R routers of a module are stored stacked, (R, E, in) and (R, E),
and evaluated in one matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def router_mixture(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, active: torch.Tensor
) -> torch.Tensor:
    """η for several routers at once.

    x: (B, T, in); weight: (R, E, in); bias: (R, E); active: (R, E) bool  ->  (B, T, R, E), rows sum to 1.
    """
    r, e, d = weight.shape
    scores = F.linear(x, weight.reshape(r * e, d), bias.reshape(r * e)).unflatten(-1, (r, e))  # (B, T, R, E)
    scores = scores.masked_fill(~active, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(x.dtype)


def nearest_experts(router_anchor: torch.Tensor, expert_anchors: torch.Tensor, k: int) -> torch.Tensor:
    """The default active set of a router: its k nearest LoRA experts (Euclidean, ties included).

    router_anchor: (N,); expert_anchors: (E, N) -> (E,) bool. With k = N (the paper's choice) a router at an
    edge midpoint of a 3-objective lattice sees the two vertices and the midpoint itself, for instance.
    """
    dist = torch.linalg.vector_norm(expert_anchors - router_anchor, dim=-1)
    k = min(k, len(dist))
    cutoff = dist.sort().values[k - 1]
    return dist <= cutoff + 1e-9


def mixture_bias(mixture: torch.Tensor, active: torch.Tensor, floor: float = 1e-4) -> torch.Tensor:
    """The bias b whose router (with W = 0) outputs ``mixture`` on the ``active`` experts:

        b_e = log max(m_e / Σ_{active} m, floor)   (active e),   0 elsewhere (masked out anyway)

    (E,), (E,) bool -> (E,) float32. softmax(b) over the active experts is then the renormalised mixture, up to
    ``floor`` given to each active expert that ``mixture`` leaves out: a weight of exactly 0 would be a logit
    of -inf, which no gradient could move again. E.g. mixture (0.5, 0.5, 0) on three active experts gives
    b = (log 0.5, log 0.5, log 1e-4), i.e. (0.49995, 0.49995, 0.0001).
    """
    m = torch.where(active, mixture.double().clamp_min(0), torch.zeros_like(mixture, dtype=torch.float64))
    total = m.sum()
    if not total > 0:
        raise ValueError("the mixture gives no weight to the router's active experts")
    b = (m / total).clamp_min(floor).log()
    return torch.where(active, b, torch.zeros_like(b)).float()


def warn_if_on_an_expert(router: str, anchor, experts: dict[str, object]) -> None:
    """Warn when router ``router``'s anchor (N,) is a LoRA expert's (``experts``: name -> anchor): preference
    routing prefers routers at a shared anchor, so the router takes all the weight there and the expert
    is reached only through the router's mixture."""
    import warnings

    from hoe.errors import HoEWarning

    a = torch.as_tensor(anchor, dtype=torch.float64)
    for name, other in experts.items():
        b = torch.as_tensor(other, dtype=torch.float64)
        if torch.allclose(a / a.sum(), b / b.sum(), atol=1e-9):
            warnings.warn(
                HoEWarning(
                    f"router {router!r} sits at the anchor of the LoRA expert {name!r}: there the router wins "
                    "(preference routing prefers routers at a shared anchor), and the expert is reached only "
                    "through the router's mixture."
                ),
                stacklevel=3,
            )
