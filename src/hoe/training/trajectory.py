"""What one PPO step of a router expert works on: the sampled responses and everything measured on them.

A :class:`Trajectory` is a :class:`~hoe.training.rollout.Rollout` (prompts, prompt and response ids, masks,
texts) plus, for its ``n`` rows, ``T`` response positions and ``m`` objectives:

* ``preference`` (n, m): the preference λ each row was generated at (the router's anchor);
* ``old_logprobs`` (n, T): ``log π_old(y_t)`` of the policy that sampled them;
* ``ref_logprobs`` (n, T): ``log π_ref(y_t)`` of the KL reference;
* ``values`` (n, T, m): each objective's value head at the state before each token;
* ``scores`` (n, m): each objective's score of the whole response;
* after the router recipe's advantage phase (:meth:`hoe.training.router.recipe.RouterRecipe.advantages`),
  ``advantages`` (whitened per objective) and ``returns``, both (n, T, m).

:class:`ValueHeads` are the ``m`` value heads, one ``Linear(hidden -> 1)`` per objective (stored as one
``Linear(hidden -> m)``), reading the policy's final hidden states *detached*: the value loss trains the heads
only, never the routers (unlike the authors' trainer, where it also reaches the shared network).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from hoe.training.rl import token_logprobs
from hoe.training.rollout import Rollout


@dataclass
class Trajectory:
    rollout: Rollout
    rows: torch.Tensor  # (n,) global row index of each row in its step's batch
    preference: torch.Tensor  # (n, m)
    old_logprobs: torch.Tensor  # (n, T)
    ref_logprobs: torch.Tensor  # (n, T)
    values: torch.Tensor  # (n, T, m)
    scores: torch.Tensor  # (n, m)
    advantages: torch.Tensor | None = None  # (n, T, m) whitened per objective
    returns: torch.Tensor | None = None  # (n, T, m)

    @property
    def n(self) -> int:
        return self.rollout.n

    @property
    def mask(self) -> torch.Tensor:
        return self.rollout.response_mask

    def select(self, index: torch.Tensor) -> Trajectory:
        """The rows ``index`` (1-D long, positions in this trajectory)."""
        tensors = {
            f.name: getattr(self, f.name)[index]
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, rollout=self.rollout.select(index), **tensors)


class ValueHeads(nn.Module):
    """``V_i(h) = w_i · h + b_i`` for each of ``m`` objectives: (…, hidden) -> (…, m), in float32."""

    def __init__(self, hidden: int, m: int):
        super().__init__()
        self.linear = nn.Linear(hidden, m)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()

    def init_bias(self, mean_scores: torch.Tensor) -> None:
        """Start as the constant baseline ``V_i = mean score of objective i`` (weights stay 0)."""
        with torch.no_grad():
            self.linear.bias.copy_(mean_scores.to(self.linear.bias))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.detach().float())


def policy_outputs(
    model, rollout: Rollout, temperature: float, value_heads: ValueHeads | None = None, **route
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(log π(y_t | x, y_<t) (n, T), V(s_t) (n, T, m) or None)`` from one forward pass.

    ``s_t`` is the state before token t (the hidden state at the position that predicts it); positions
    follow the attention mask (left padding), as during generation. ``route``: ``preference=`` or
    ``expert_weights=`` of an HoE model. Gradients flow if enabled (to the routers and, through the detached
    hidden states, to the value heads only).
    """
    ids = torch.cat([rollout.prompt_ids, rollout.response_ids], dim=1)  # (n, P + T)
    mask = torch.cat([rollout.prompt_mask, rollout.response_mask.long()], dim=1)  # (n, P + T)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    t = rollout.response_ids.shape[1]
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        logits_to_keep=t + 1,
        output_hidden_states=value_heads is not None,
        use_cache=False,
        **route,
    )
    logp = token_logprobs(out.logits[:, :-1], rollout.response_ids, temperature)  # (n, T)
    if value_heads is None:
        return logp, None
    hidden = out.hidden_states[-1][:, -(t + 1) : -1]  # (n, T, d): states before each response token
    return logp, value_heads(hidden)  # (n, T, m)
