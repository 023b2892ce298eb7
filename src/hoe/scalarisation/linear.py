"""Linear scalarisation ``u(r) = Σ_i λ_i r_i``; the advantage weights are λ itself, fixed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoe.scalarisation.base import register_scalarisation


def linear_utility(rewards: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``u_b = Σ_i λ_i r_{b,i}``: (n, m), (m,) -> (n,)."""
    return rewards @ lam.to(rewards.dtype)


@register_scalarisation("linear")
@dataclass
class Linear:
    lam: torch.Tensor

    def utility(self, rewards: torch.Tensor) -> torch.Tensor:
        return linear_utility(rewards, self.lam)

    def initial_weights(self) -> torch.Tensor:
        return self.lam.clone()

    def update_weights(self, w: torch.Tensor, mean_reward: torch.Tensor) -> torch.Tensor:
        return w
