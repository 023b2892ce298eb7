"""Tchebycheff scalarisation optimised by online mirror descent (METHOD.md §2(b).2, Eq. 6-8).

The router expert at λ maximises the worst weighted gap to a target (ideal) point z*:

    max_θ  u(θ),    u = min_i λ_i (R_i(θ) - z*_i)                                   (Eq. 6)

written as a saddle problem over a distribution w on the objectives,
``max_θ min_w Σ_i w_i λ_i (R_i - z*_i)``. The inner player runs entropic mirror descent on w with the batch-mean
rewards R̄, smoothed toward its past (the authors' rule; ``α`` = global batch / horizon, e.g. 240 / 2000):

    log w ← (1 - α) · log w + α · η · λ ⊙ (z* - R̄),    w ← softmax(log w)            (OMD)

so the objective furthest below its λ-weighted target gains weight; the policy then ascends ``Σ_i w_i A_i``
(Eq. 8). With R̄ held fixed, w converges to ``softmax(η · λ ⊙ (z* - R̄))``. Objectives with λ_i = 0 are not part
of the min and keep w_i = 0. ``η`` = 3 and ``w_0 ∝ 1/λ`` are the authors' choices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoe.errors import ConfigError, bad_value
from hoe.scalarisation.base import register_scalarisation


def tchebycheff_utility(rewards: torch.Tensor, lam: torch.Tensor, z_star: torch.Tensor) -> torch.Tensor:
    """``u_b = min_{i: λ_i > 0} λ_i (r_{b,i} - z*_i)``: (n, m), (m,), (m,) -> (n,). Larger is better."""
    gaps = lam.to(rewards) * (rewards - z_star.to(rewards))  # (n, m)
    return gaps[:, lam > 0].min(-1).values


def omd_init(lam: torch.Tensor) -> torch.Tensor:
    """``w_0 ∝ 1/λ_i`` on the support of λ, 0 off it: (m,) -> (m,). E.g. λ = (0.4, 0.6) -> (0.6, 0.4)."""
    inv = torch.where(lam > 0, 1 / lam, torch.zeros_like(lam))
    return inv / inv.sum()


def omd_update(
    w: torch.Tensor,
    lam: torch.Tensor,
    z_star: torch.Tensor,
    mean_reward: torch.Tensor,
    alpha: float,
    step_size: float = 3.0,
) -> torch.Tensor:
    """One smoothed mirror-descent step, ``softmax((1 - α) log w + α η λ ⊙ (z* - R̄))``: all (m,) -> (m,)."""
    log_w = torch.where(w > 0, w.log(), torch.full_like(w, float("-inf")))
    drive = torch.where(lam > 0, lam * (z_star - mean_reward), torch.zeros_like(lam))  # (m,)
    return torch.softmax((1 - alpha) * log_w + alpha * step_size * drive, dim=-1)


def omd_fixed_point(
    lam: torch.Tensor, z_star: torch.Tensor, mean_reward: torch.Tensor, step_size: float = 3.0
) -> torch.Tensor:
    """Where OMD settles while R̄ stays put, ``softmax(η λ ⊙ (z* - R̄))`` on the support of λ: all (m,) -> (m,).

    Near uniform means the rewards' gaps are small next to ``1 / η`` and the policy ascends a near-equal sum
    of the objectives' advantages instead of the worst gap; e.g. λ = (1/3, 1/3, 1/3), gaps (0.10, 0.38, 0.21) and η = 3 give (0.29, 0.38, 0.32).
    """
    drive = torch.where(
        lam > 0, step_size * lam * (z_star - mean_reward), torch.full_like(lam, float("-inf"))
    )
    return torch.softmax(drive, dim=-1)


def reward_point(value, lam: torch.Tensor, field: str, fix: str) -> torch.Tensor:
    """``value`` as an (m,) tensor like ``lam``: one finite reward per objective, else a ConfigError on ``field``."""
    point = torch.as_tensor(value, dtype=lam.dtype)
    if point.shape != lam.shape or not torch.isfinite(point).all():
        raise ConfigError(
            f"got {point.tolist()} for {lam.numel()} objectives.", field=field, value=point.tolist(), fix=fix
        )
    return point


def check_rate(alpha: float) -> None:
    """The OMD smoothing rate α = batch size / horizon must lie in (0, 1]."""
    if not 0 < alpha <= 1:
        raise bad_value("omd_alpha", alpha, "Pass a smoothing rate in (0, 1], e.g. 0.12.")


@register_scalarisation("tchebycheff")
@dataclass
class Tchebycheff:
    """Tchebycheff at ``lam`` with target ``z_star``; ``alpha`` = global batch size / horizon (e.g. 0.12)."""

    lam: torch.Tensor
    z_star: torch.Tensor
    alpha: float = 0.12
    step_size: float = 3.0

    def __post_init__(self) -> None:
        self.z_star = reward_point(
            self.z_star, self.lam, "target_point",
            "Pass one finite target reward z* per objective, a little above what the experts reach.",
        )  # fmt: skip
        check_rate(self.alpha)

    def utility(self, rewards: torch.Tensor) -> torch.Tensor:
        return tchebycheff_utility(rewards, self.lam, self.z_star)

    def initial_weights(self) -> torch.Tensor:
        return omd_init(self.lam)

    def update_weights(self, w: torch.Tensor, mean_reward: torch.Tensor) -> torch.Tensor:
        return omd_update(w, self.lam, self.z_star, mean_reward, self.alpha, self.step_size)
