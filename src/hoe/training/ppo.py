"""Multi-objective PPO math for router experts (METHOD.md §2(b).2): pure tensor functions, no I/O, no config.

Shapes: ``n`` responses, ``T`` generated positions (right-padded; ``mask`` (n, T) is 1 on real tokens), ``m``
objectives. Each objective has its own per-token rewards, value head, GAE advantages and returns; the policy
ascends the clipped surrogate of the combined advantage ``A = Σ_i w_i A_i`` (Eq. 8), with ``w`` from the
scalarisation (:mod:`hoe.scalarisation`).
"""

from __future__ import annotations

import torch


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """``r_{t,i} = -β · KL_t + [t = last token] · s_i``: the same KL penalty for every objective, each
    objective's sequence score added at the response's last token.

    scores: (n, m); kl: (n, T) per-token ``log π(y_t) - log π_ref(y_t)``; mask: (n, T) with at least one real
    token per row. Returns (n, T, m), zero on padding.
    """
    mask = mask.to(kl.dtype)
    last = (mask.cumsum(-1) == mask.sum(-1, keepdim=True)) & (mask > 0)  # (n, T): the last real token
    r = (-kl_coef * kl * mask).unsqueeze(-1).expand(-1, -1, scores.shape[-1]).clone()  # (n, T, m)
    r[last] += scores.to(r.dtype)  # one row of m scores per response
    return r


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation, per objective (Schulman et al., 2016).

        δ_t = r_t + γ V_{t+1} - V_t,    A_t = δ_t + γ λ A_{t+1},    returns G_t = A_t + V_t

    with ``V`` and ``A`` zero past the last real token (the episode ends there). rewards, values:
    (n, T, m); mask: (n, T). Returns ``(A, G)``, both (n, T, m), zero on padding. γ = λ = 1 gives the
    Monte-Carlo ``A_t = Σ_{s ≥ t} r_s - V_t``; λ = 0 the one-step TD error.
    """
    m = mask.to(values.dtype).unsqueeze(-1)  # (n, T, 1)
    r, v = rewards * m, values * m
    adv = torch.zeros_like(v)
    running = torch.zeros_like(v[:, 0])  # (n, m): A_{t+1}
    next_v = torch.zeros_like(v[:, 0])  # (n, m): V_{t+1}
    for t in reversed(range(v.shape[1])):
        delta = r[:, t] + gamma * next_v - v[:, t]
        running = (delta + gamma * lam * running) * m[:, t]
        adv[:, t] = running
        next_v = v[:, t]
    return adv, (adv + v) * m


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / std`` over the real tokens, separately for each objective: (n, T, m), (n, T) -> (n, T, m).

    Zero on padding. ``std`` is the unbiased standard deviation (0 for a single token: then only centred).
    """
    m = mask.to(x.dtype).unsqueeze(-1)  # (n, T, 1)
    count = m.sum((0, 1))  # (1,) tokens
    mean = (x * m).sum((0, 1)) / count  # (m,)
    var = (((x - mean) * m) ** 2).sum((0, 1)) / (count - 1).clamp_min(1)  # (m,)
    return (x - mean) * torch.rsqrt(var + eps) * m


def combined_advantage(advantages: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``A_t = Σ_i w_i A_{t,i}`` (Eq. 8): (n, T, m), (m,) -> (n, T)."""
    return advantages @ w.to(advantages.dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the real tokens: (n, T[, m]), (n, T) -> scalar."""
    m = mask.to(x.dtype)
    if x.dim() == 3:
        m = m.unsqueeze(-1).expand_as(x)
    return (x * m).sum() / m.sum()


def ppo_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> torch.Tensor:
    """Clipped surrogate ``L = E_t[max(-A_t ρ_t, -A_t clip(ρ_t, 1 - ε, 1 + ε))]``, ``ρ_t = π/π_old``.

    All (n, T); advantages are constants. Minimising L ascends the PPO objective.
    """
    ratio = torch.exp(logp - old_logp)
    a = advantages.detach()
    return masked_mean(torch.maximum(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip)), mask)


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> torch.Tensor:
    """Clipped value loss ``½ E_{t,i}[max((V - G)², (V_old + clip(V - V_old, ±ε) - G)²)]`` averaged over the
    m objectives' heads: values, old_values, returns (n, T, m); mask (n, T)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    g = returns.detach()
    return 0.5 * masked_mean(torch.maximum((values - g) ** 2, (clipped - g) ** 2), mask)
