"""The hypervolume scalarisation (Zhang & Golovin 2020, "Random hypervolume scalarizations for provable
multi-objective black box optimization"), for a router expert whose gain should be a gain of the front.

With r the evaluation's hypervolume reference point and a direction λ (λ_i > 0 on its support),

    s_λ(y) = min_{i: λ_i > 0} max(0, (y_i - r_i) / λ_i) ^ m                                      (HV-s)

is the m-th power of how far the ray r + t λ reaches before it leaves the region y dominates; for λ drawn
uniformly on the positive unit sphere, c_m E_λ[s_λ(y)] is the hypervolume of {y} above r (c_m a constant of m),
and of a set, E_λ[max_y s_λ(y)]. So raising s at the router's anchor direction raises the front there, and
trading one objective for another counts only if the binding ratio (y_i - r_i) / λ_i rises. λ on the simplex
instead of the sphere multiplies s_λ by ‖λ‖₂^m, a constant for one router, which changes no argmax.

Advantage weights: the min makes ∂s/∂R̄ point at the binding objective; as for Tchebycheff (whose OMD this
shares, :func:`hoe.scalarisation.tchebycheff.omd_update`), the weights w run smoothed entropic mirror descent
on the negated ratios, so the objective with the smallest ratio gains weight:

    log w ← (1 - α) · log w - α · η · (R̄ - r) / λ,    w ← softmax(log w)

The power m is monotone and leaves w alone. The ratios are in units of reward per unit of λ (about 1 for
rewards in [0, 1]), so the authors' η = 3 already separates them; Tchebycheff's gaps λ (z* - R̄) are smaller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoe.scalarisation.base import register_scalarisation
from hoe.scalarisation.tchebycheff import check_rate, omd_init, reward_point


def hypervolume_ratios(rewards: torch.Tensor, lam: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``(y_i - r_i) / λ_i`` on the support of λ, +inf off it (never the min): (n, m), (m,), (m,) -> (n, m)."""
    lam = lam.to(rewards)
    safe = torch.where(lam > 0, lam, torch.ones_like(lam))
    ratios = (rewards - ref.to(rewards)) / safe
    return torch.where(lam > 0, ratios, torch.full_like(ratios, float("inf")))


def hypervolume_utility(rewards: torch.Tensor, lam: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``s_λ(y) = max(0, min_{i: λ_i > 0} (y_i - r_i) / λ_i) ^ m`` (HV-s): (n, m), (m,), (m,) -> (n,).

    E.g. λ = (0.5, 0.5), r = 0 and y = (0.2, 0.6): ratios (0.4, 1.2), s = 0.4² = 0.16.
    """
    worst = hypervolume_ratios(rewards, lam, ref).min(-1).values
    return worst.clamp_min(0) ** rewards.shape[-1]


def hypervolume_omd_update(
    w: torch.Tensor,
    lam: torch.Tensor,
    ref: torch.Tensor,
    mean_reward: torch.Tensor,
    alpha: float,
    step_size: float = 3.0,
) -> torch.Tensor:
    """``softmax((1 - α) log w - α η (R̄ - r) / λ)`` on the support of λ (0 off it): all (m,) -> (m,)."""
    log_w = torch.where(w > 0, w.log(), torch.full_like(w, float("-inf")))
    ratios = hypervolume_ratios(mean_reward[None], lam, ref)[0]
    drive = torch.where(lam > 0, -ratios, torch.zeros_like(lam))
    return torch.softmax((1 - alpha) * log_w + alpha * step_size * drive, dim=-1)


@register_scalarisation("hypervolume")
@dataclass
class Hypervolume:
    """s_λ at ``lam`` from the reference point ``ref_point`` (the evaluation's); OMD rate ``alpha``, η
    ``step_size``."""

    lam: torch.Tensor
    ref_point: torch.Tensor
    alpha: float = 0.12
    step_size: float = 3.0

    def __post_init__(self) -> None:
        self.ref_point = reward_point(
            self.ref_point, self.lam, "reference_point",
            "Pass one finite reward per objective below which a response counts for nothing (the "
            "evaluation's hypervolume reference point).",
        )  # fmt: skip
        check_rate(self.alpha)

    def utility(self, rewards: torch.Tensor) -> torch.Tensor:
        return hypervolume_utility(rewards, self.lam, self.ref_point)

    def initial_weights(self) -> torch.Tensor:
        return omd_init(self.lam)

    def update_weights(self, w: torch.Tensor, mean_reward: torch.Tensor) -> torch.Tensor:
        return hypervolume_omd_update(w, self.lam, self.ref_point, mean_reward, self.alpha, self.step_size)
