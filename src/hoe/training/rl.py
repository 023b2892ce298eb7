"""Policy-gradient math for the expert recipe: pure tensor functions, no I/O, no config.

Notation: a batch holds ``B`` prompts with ``K`` sampled responses each, ``n = B * K`` rows ordered
prompt-major (rows ``b*K .. b*K + K-1`` share prompt ``b``); ``T`` is the number of generated positions.
Log-probabilities are those of the *sampling* distribution, ``softmax(logits / temperature)``.
"""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log π(y_t | x, y_<t)`` of the given tokens.

    logits: (n, T, V), the model's outputs at the positions *before* each token; tokens: (n, T).
    Returns (n, T), computed in float32 as ``z[y] - logsumexp(z)`` with ``z = logits / temperature``.
    """
    z = logits.float() / temperature  # (n, T, V)
    picked = z.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (n, T)
    return picked - z.logsumexp(-1)


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Σ_t values[:, t] * mask[:, t]``: (n, T), (n, T) -> (n,)."""
    return (values * mask.to(values.dtype)).sum(-1)


def kl_penalised_reward(
    score: torch.Tensor, logp_policy: torch.Tensor, logp_base: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``r_i = s_i - β · KL_i`` with the per-sequence KL estimate ``KL_i = Σ_t log π(y_t) - log π_base(y_t)``.

    The estimate is the sum over the sampled tokens of the log-ratio (unbiased for KL(π || π_base) when
    ``y ~ π``). All inputs are (n,), log-probabilities summed over each response; returns ``(r, KL)``.
    """
    kl = logp_policy - logp_base  # (n,)
    return score - kl_coef * kl, kl


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """REINFORCE leave-one-out advantages (Kool et al., 2019; Ahmadian et al., 2024).

    ``A_i = r_i - 1/(K-1) Σ_{j ≠ i} r_j`` over the ``K`` samples of the same prompt, which equals
    ``K/(K-1) · (r_i - mean_j r_j)``. rewards: (n,) prompt-major with n divisible by K >= 2; returns (n,).
    """
    if k < 2 or rewards.numel() % k:
        raise ValueError(
            f"RLOO needs K >= 2 samples per prompt and n divisible by K (n={rewards.numel()}, K={k})"
        )
    r = rewards.reshape(-1, k)  # (B, K)
    baseline = (r.sum(-1, keepdim=True) - r) / (k - 1)  # (B, K): mean of the other K-1 samples
    return (r - baseline).reshape(-1)


def policy_gradient_loss(logp: torch.Tensor, advantages: torch.Tensor, n_total: int) -> torch.Tensor:
    """``L = -(1/N) Σ_i A_i · log π(y_i | x_i)``; its gradient is the RLOO policy gradient (ascent on reward).

    logp: (n,) summed over each response, with grad; advantages: (n,), treated as constants; ``N`` the rows
    of the whole batch, so losses of micro-batches add up to the batch loss.
    """
    return -(advantages.detach() * logp).sum() / n_total


def response_mask(tokens: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """1 for generated tokens up to and including the first end-of-sequence token, then 0.

    tokens: (n, T) generated ids (finished rows are padded by ``generate``); returns (n, T) float.
    """
    is_eos = torch.isin(tokens, torch.tensor(eos_ids, dtype=tokens.dtype, device=tokens.device))  # (n, T)
    eos_before = is_eos.long().cumsum(-1) - is_eos.long()  # (n, T): EOS tokens strictly before t
    return (eos_before == 0).float()
