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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hoe.io.adapters import LoraWeights
from hoe.model.context import RoutingContext, current_routing
from hoe.model.router import router_mixture


@dataclass
class CallPlan:
    """One layer's factors and gates for one call: the reachable experts' rank rows only (r of Σr)."""

    A: torch.Tensor  # (r, in)
    B: torch.Tensor  # (out, r)
    where: torch.Tensor  # (r,) position of each rank row's expert among the reachable ones
    lora_gate: torch.Tensor  # (B, 1, E') weights of LoRA-expert anchors
    rank_gate: torch.Tensor | None = None  # (B, 1, r) when no router is used
    router_weight: torch.Tensor | None = None  # (R, E', in)
    router_bias: torch.Tensor | None = None  # (R, E')
    router_mask: torch.Tensor | None = None  # (R, E') bool
    router_mix: torch.Tensor | None = None  # (B, R) w⁽¹⁾ of the routers


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
        self.layout = tuple(ranks)
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
            raise RuntimeError(
                "HoELinear called outside HoEModel.forward/generate: no preference is set (for activation "
                "checkpointing, use HoEModel.activation_checkpointing, which keeps the routing)."
            )
        plan = ctx.memo(("plan", id(self), x.shape[0], x.dtype), lambda: self.plan(ctx, x.shape[0], x.dtype))
        if plan.A.shape[0] == 0:
            return y
        if plan.router_weight is None:
            gate = plan.rank_gate  # (B, 1, r): the same for every token
        else:
            eta = router_mixture(x, plan.router_weight, plan.router_bias, plan.router_mask)  # (B, T, R, E')
            mixed = plan.lora_gate + (plan.router_mix[:, None, :, None] * eta).sum(-2)  # (B, T, E')
            gate = mixed[..., plan.where]  # (B, T, r)
        h = F.linear(x, plan.A) * gate
        return y + F.linear(h, plan.B)

    def plan(self, ctx: RoutingContext, batch: int, dtype: torch.dtype) -> CallPlan:
        """What this call needs, computed once per call (``generate`` reuses it for every new token).

        Only the experts the call can reach are kept (E' of E: those with a LoRA-anchor weight or in a used
        router's active set), so their rank rows alone are multiplied: a λ inside one Delaunay cell of a
        3-objective lattice touches 3 of 6 experts and costs half the LoRA work.
        """
        active = ctx.active_experts  # (E',) sorted expert indices
        if active.numel() == self.num_experts:
            a, b, where = self.lora_A, self.lora_B, self.rank_owner
        else:
            rows = torch.isin(self.rank_owner, active).nonzero().flatten()
            a, b = self.lora_A[rows], self.lora_B[:, rows]
            where = torch.searchsorted(active, self.rank_owner[rows])  # rank row -> position in `active`
        lora_gate = ctx.rows("lora", batch)[:, active].to(dtype)[:, None, :]  # (B, 1, E')
        if ctx.router_ids.numel() == 0:
            return CallPlan(a, b, where, lora_gate, rank_gate=lora_gate[..., where])
        ids = ctx.router_ids
        return CallPlan(
            a,
            b,
            where,
            lora_gate,
            router_weight=self.router_weight[ids][:, active],  # (R, E', in)
            router_bias=self.router_bias[ids][:, active],
            router_mask=self.router_active[ids][:, active],
            router_mix=ctx.rows("routers", batch).to(dtype),  # (B, R)
        )

    def expert_gate(self, x: torch.Tensor, ctx: RoutingContext) -> torch.Tensor:
        """w⁽²⁾(x) over all E experts: (B, 1 or T, E) (for inspection and tests, not the hot path)."""
        plan = self.plan(ctx, x.shape[0], x.dtype)
        gate = plan.lora_gate
        if plan.router_weight is not None:
            eta = router_mixture(x, plan.router_weight, plan.router_bias, plan.router_mask)
            gate = gate + (plan.router_mix[:, None, :, None] * eta).sum(-2)
        full = gate.new_zeros(*gate.shape[:-1], self.num_experts)
        full[..., ctx.active_experts] = gate
        return full

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
