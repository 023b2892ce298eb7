"""The HoE layer: a frozen base linear map plus E frozen LoRA experts mixed per token (METHOD.md §2(a).3, Eq. 11).

    y = W x + Σ_j w⁽²⁾_j(x) · B_j A_j x,      w⁽²⁾(x) = Σ_k w⁽¹⁾_k · η_k(x)

where an anchor k that is a LoRA expert contributes its one-hot vector and a router expert its mixture η_k(x).
The experts are stored stacked, A: (Σr, in) and B: (out, Σr), so the mixture costs two matmuls whatever E is:

    h = A x            (…, Σr)
    h = h ⊙ g          g: each expert's gate repeated over its rank rows
    y = W x + B h

Experts may have different ranks; an expert absent from this module has zero rows here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hoe.io.adapters import LoraWeights
from hoe.model.context import RoutingContext, current_routing
from hoe.model.router import router_mixture


class HoELinear(nn.Module):
    """Wraps a base ``nn.Linear`` or GPT-2 ``Conv1D`` (never touching its weight) with E LoRA experts."""

    def __init__(self, base_layer: nn.Module, experts: list[LoraWeights | None], num_routers: int = 0):
        super().__init__()
        self.base_layer = base_layer
        weight = base_layer.weight
        self.transposed = type(base_layer).__name__ == "Conv1D"  # GPT-2: weight stored (in, out)
        self.out_features, self.in_features = weight.shape[::-1] if self.transposed else weight.shape
        self.num_experts = len(experts)
        ranks = [0 if w is None else w.rank for w in experts]
        self.layout = tuple(ranks)  # modules with the same rank layout share an expanded gate per call
        present = [w for w in experts if w is not None]
        a = torch.cat([w.A for w in present]) if present else weight.new_zeros(0, self.in_features)
        b = torch.cat([w.B for w in present], 1) if present else weight.new_zeros(self.out_features, 0)
        self.register_buffer("lora_A", a.to(weight), persistent=False)  # (Σr, in)
        self.register_buffer("lora_B", b.to(weight), persistent=False)  # (out, Σr)
        owner = torch.repeat_interleave(torch.arange(len(ranks)), torch.tensor(ranks, dtype=torch.long))
        self.register_buffer("rank_owner", owner, persistent=False)  # (Σr,) expert of each rank row
        self.router_weight = nn.Parameter(weight.new_zeros(num_routers, self.num_experts, self.in_features))
        self.router_bias = nn.Parameter(weight.new_ones(num_routers, self.num_experts))
        self.register_buffer(
            "router_active", torch.ones(num_routers, self.num_experts, dtype=torch.bool), persistent=False
        )

    @property
    def num_routers(self) -> int:
        return self.router_weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        ctx = current_routing()
        if ctx is None:
            raise RuntimeError("HoELinear called outside HoEModel.forward/generate: no preference is set.")
        if self.lora_A.shape[0] == 0:
            return y
        gate = self.rank_gate(x, ctx)  # (B, 1 or T, Σr)
        h = F.linear(x, self.lora_A) * gate
        return y + F.linear(h, self.lora_B)

    def expert_gate(self, x: torch.Tensor, ctx: RoutingContext) -> torch.Tensor:
        """w⁽²⁾(x): (B, T, E) with routers in use, else (B, 1, E) (the same for every token)."""
        batch = x.shape[0]
        gate = ctx.rows("lora", batch)[:, None, :].to(x.dtype)  # (B, 1, E)
        if ctx.router_ids.numel() == 0:
            return gate
        ids = ctx.router_ids
        eta = router_mixture(x, self.router_weight[ids], self.router_bias[ids], self.router_active[ids])
        w = ctx.rows("routers", batch).to(x.dtype)  # (B, R_active)
        return gate + (w[:, None, :, None] * eta).sum(-2)  # (B, T, E)

    def rank_gate(self, x: torch.Tensor, ctx: RoutingContext) -> torch.Tensor:
        """The expert gate repeated over each expert's rank rows: (B, 1 or T, Σr)."""
        if ctx.router_ids.numel() == 0:  # token-independent: compute once per call and rank layout
            key = ("rank_gate", self.layout, x.shape[0], x.dtype)
            return ctx.memo(key, lambda: self.expert_gate(x, ctx)[..., self.rank_owner])
        return self.expert_gate(x, ctx)[..., self.rank_owner]

    def add_router(self, active: torch.Tensor) -> None:
        """Append one router (W = 0, b = 1: uniform over ``active`` (E,) bool experts)."""
        w, b = self.router_weight, self.router_bias
        self.router_weight = nn.Parameter(torch.cat([w.data, w.new_zeros(1, *w.shape[1:])]))
        self.router_bias = nn.Parameter(torch.cat([b.data, b.new_ones(1, b.shape[1])]))
        self.router_active = torch.cat([self.router_active, active.to(self.router_active)[None]])

    def expert_weights(self, e: int) -> LoraWeights | None:
        """Expert ``e``'s factors in this module (None if it does not adapt it)."""
        rows = self.rank_owner == e
        if not rows.any():
            return None
        return LoraWeights(A=self.lora_A[rows], B=self.lora_B[:, rows], transposed=self.transposed)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, experts={self.layout}, routers={self.num_routers}"
