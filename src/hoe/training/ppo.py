"""Multi-objective PPO math for router experts (METHOD.md §2(b).2): pure tensor functions, no I/O, no config.

Shapes: ``n`` responses, ``T`` generated positions (right-padded; ``mask`` (n, T) is 1 on real tokens), ``m``
objectives. Each objective has its own per-token rewards, value head, GAE advantages and returns; the policy
ascends the clipped surrogate of the combined advantage ``A = Σ_i w_i A_i`` (Eq. 8), with ``w`` from the
scalarisation (:mod:`hoe.scalarisation`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Reduce = Callable[[torch.Tensor], torch.Tensor]
"""Sums a per-process statistic over all processes (:meth:`hoe.distributed.Dist.sum`); identity alone."""


def _alone(t: torch.Tensor) -> torch.Tensor:
    return t


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


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8, reduce: Reduce = _alone
) -> torch.Tensor:
    """``(x - mean) / std`` over the real tokens, separately for each objective: (n, T, m), (n, T) -> (n, T, m).

    Zero on padding. ``std`` is the unbiased standard deviation (0 for a single token: then only centred).
    ``reduce`` sums the moments over processes, so several processes holding parts of a batch whiten with the
    statistics of the whole batch.
    """
    m = mask.to(x.dtype).unsqueeze(-1)  # (n, T, 1)
    count = reduce(m.sum((0, 1)))  # (1,) tokens
    mean = reduce((x * m).sum((0, 1))) / count  # (m,)
    var = reduce((((x - mean) * m) ** 2).sum((0, 1))) / (count - 1).clamp_min(1)  # (m,)
    return (x - mean) * torch.rsqrt(var + eps) * m


def combined_advantage(advantages: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``A_t = Σ_i w_i A_{t,i}`` (Eq. 8): (n, T, m), (m,) -> (n, T)."""
    return advantages @ w.to(advantages)


def masked_mean(
    x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor | float | None = None
) -> torch.Tensor:
    """Mean of ``x`` over the real tokens: (n, T[, m]), (n, T) -> scalar.

    ``count``: the number of real tokens to divide by (default ``mask.sum()``); pass the count of a whole batch
    to get this part's share of the batch mean, so that parts (micro-batches, processes) add up to it. For
    (n, T, m) the mean is also over the m objectives.
    """
    m = mask.to(x.dtype)
    tokens = m.sum() if count is None else count
    if x.dim() == 3:
        return (x * m.unsqueeze(-1)).sum() / (tokens * x.shape[-1])
    return (x * m).sum() / tokens


def ppo_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    count: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Clipped surrogate ``L = E_t[max(-A_t ρ_t, -A_t clip(ρ_t, 1 - ε, 1 + ε))]``, ``ρ_t = π/π_old``.

    All (n, T); advantages are constants. Minimising L ascends the PPO objective. ``count``: see
    :func:`masked_mean`.
    """
    ratio = torch.exp(logp - old_logp)
    a = advantages.detach()
    return masked_mean(torch.maximum(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip)), mask, count)


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    count: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Clipped value loss ``½ E_{t,i}[max((V - G)², (V_old + clip(V - V_old, ±ε) - G)²)]`` averaged over the
    m objectives' heads: values, old_values, returns (n, T, m); mask (n, T). ``count``: see :func:`masked_mean`."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    g = returns.detach()
    return 0.5 * masked_mean(torch.maximum((values - g) ** 2, (clipped - g) ** 2), mask, count)


def mo_ppo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    w: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    value_clip: float = 0.2,
    vf_coef: float = 0.1,
    count: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The multi-objective PPO loss of a router expert (METHOD.md §2(b).2, Eq. 8):

        L = L_clip(Σ_i w_i A_i) + c_v · ½ E_{t,i}[max((V_i - G_i)², (V_i,clip - G_i)²)]

    logp, old_logp, mask: (n, T); values, old_values, advantages (whitened per objective), returns: (n, T, m);
    w: (m,) the scalarisation's weights. Returns ``(L, {"policy_loss", "value_loss", "clipped", "kl2"})``,
    the last two summed over tokens (not averaged): clipped ratios ``|ρ - 1| > ε`` and ``½ (log ρ)²``, whose
    means are the clip fraction and the approximate KL(π_old || π).
    """
    policy = ppo_policy_loss(logp, old_logp, combined_advantage(advantages, w), mask, clip, count)
    value = ppo_value_loss(values, old_values, returns, mask, value_clip, count)
    with torch.no_grad():
        m = mask.to(logp.dtype)
        log_ratio = logp - old_logp
        clipped = (((log_ratio.exp() - 1).abs() > clip).to(m.dtype) * m).sum()
        kl2 = (0.5 * log_ratio**2 * m).sum()
    stats = {"policy_loss": policy.detach(), "value_loss": value.detach(), "clipped": clipped, "kl2": kl2}
    return policy + vf_coef * value, stats


def adaptive_kl_coef(coef: float, kl: float, target: float, n_steps: int, horizon: int) -> float:
    """The adaptive KL controller of Ziegler et al. (2019), used by the authors' trainer:

        e = clip(KL / KL_target - 1, -0.2, 0.2),    β ← β · (1 + e · n / H)

    with ``KL`` the batch mean of the per-sequence KL to the reference, ``n`` the global batch size and ``H``
    the horizon. β rises while KL is above its target and falls below it.
    """
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return coef * (1.0 + error * n_steps / horizon)
