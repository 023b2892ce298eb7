"""The HoE layer: a frozen base linear map plus E frozen LoRA experts mixed per token (METHOD.md §2(a).3, Eq. 11).

    y = W x + Σ_j w⁽²⁾_j(x) · B_j A_j x,      w⁽²⁾(x) = Σ_k w⁽¹⁾_k · η_k(x)

where an anchor k that is a LoRA expert contributes its one-hot vector and a router expert its mixture η_k(x).
The experts are stored stacked, A: (Σr, in) and B: (out, Σr); each rank row has a gate g, its expert's w⁽²⁾.

This module holds the layer's weights and the reference computation (:meth:`HoELinear.reference_forward`,
what router training runs and every fast path is tested against); the decode fast paths and the per-call
buffers they read are :mod:`hoe.model.decode`. The routing of the call in progress is the model's
:class:`~hoe.model.routing_state.RoutingState`, handed to every layer when it is wrapped; a layer only reads it.

**Decoding cost.** Decoding is launch-bound (BENCH.md §3), so the layer computes what a call needs in the
fewest tensor ops per token. W, A and the routers' weights (R·E, in) live in one buffer ``stacked`` (the base
layer's weight is a view of its first rows, so nothing is stored twice), and a call's gates are written into
the layer once, when the call starts (:func:`hoe.model.decode.prepare`), keeping only the rank rows of the
experts the call can reach (3 of 6 for a λ inside one cell of a 3-objective lattice). Per token, beyond the base matmul:

==============================  ==================================================================  ======
mode                            computation                                                         ops
==============================  ==================================================================  ======
``one``: one gate, no router    [W; A] x in one matmul, then y = Wx + B diag(g) h in one addmm      +1
                                (g folded into the kept rows of Bᵀ when the call starts)
``merged`` (opt-in)             W + B diag(g) A merged into a working copy of W once per call       +0
``rows``: a gate per row        [W; A] x, h ⊙ g_row, addmm                                          +2
``routers``                     [W; A; W_R] x + [b; 0; b_R] (masked router scores are −∞ in the     +4
                                bias), softmax per router, g = g_lora + η · M (one baddbmm, M mixes
                                the routers' w⁽¹⁾ and expands experts to rank rows), h ⊙ g, addmm
==============================  ==================================================================  ======

Writing a call's state costs a copy per reached expert (its rows of A and Bᵀ are contiguous), done only when
the set of reached experts (or the state's version) changes, and one op per reached expert for the gates,
skipped when they are the last call's: a server or a sweep at one λ pays it once.
The per-call state is fixed tensors refreshed in place, so ``torch.compile(fullgraph=True)`` captures a
decode step whole (:class:`~hoe.model.hoe_model.HoEModel` serialises calls so that two never share them).
With gradients flowing into the routers (router training) the layer runs the reference computation instead,
which reads the routers' parameters directly. A base layer that is not a plain ``nn.Linear`` (GPT-2's ``Conv1D``, a quantised
layer) keeps its own forward and ``stacked`` holds only the expert and router rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hoe.io.adapters import LoraWeights
from hoe.model import decode
from hoe.model.router import router_mixture
from hoe.model.routing_state import RoutingState


class HoELinear(nn.Module):
    """Wraps a base ``nn.Linear`` or GPT-2 ``Conv1D`` (never changing its weight's values) with E LoRA experts.

    ``routing``: the model's routing state, which this layer reads (a layer made alone gets its own)."""

    CALL_STATE = ("stacked", "stacked_bias", "merged_weight", "call_gate", "call_mix", "call_Bt")
    """Buffers every call rewrites from the experts, the routers and its gates (W's rows of ``stacked`` aside,
    which are the base weight): derived state, not the model's."""

    def __init__(
        self,
        base_layer: nn.Module,
        experts: list[LoraWeights | None],
        num_routers: int = 0,
        routing: RoutingState | None = None,
    ):
        super().__init__()
        self.base_layer = base_layer
        weight = base_layer.weight
        self.transposed = type(base_layer).__name__ == "Conv1D"  # GPT-2: weight stored (in, out)
        self.out_features, self.in_features = weight.shape[::-1] if self.transposed else weight.shape
        self.num_experts = len(experts)
        self.routing = routing if routing is not None else RoutingState(self.num_experts)
        ranks = [0 if w is None else w.rank for w in experts]
        self.layout = tuple(ranks)
        self.rank = sum(ranks)
        present = [w for w in experts if w is not None]
        a = torch.cat([w.A for w in present]) if present else torch.zeros(0, self.in_features)
        b = torch.cat([w.B for w in present], 1) if present else torch.zeros(self.out_features, 0)
        self.register_buffer("lora_A", a.to(weight), persistent=False)  # (Σr, in)
        # Bᵀ, (Σr, out): an expert's columns of B are then contiguous rows, copied in one op per call
        self.register_buffer("lora_Bt", b.t().to(weight).contiguous(), persistent=False)
        # expert e's rank rows of A and Bᵀ: starts[e] … starts[e] + r_e − 1
        self.starts = [sum(ranks[:e]) for e in range(self.num_experts)]
        self.present = tuple(e for e in range(self.num_experts) if ranks[e])
        owner = [e for e, r in enumerate(ranks) for _ in range(r)]
        self.register_buffer(
            "rank_owner", torch.tensor(owner, dtype=torch.long, device=weight.device), persistent=False
        )  # (Σr,) expert of each rank row
        self.router_weight = nn.Parameter(weight.new_zeros(num_routers, self.num_experts, self.in_features))
        self.router_bias = nn.Parameter(weight.new_ones(num_routers, self.num_experts))
        # a plain nn.Linear is fused: its weight becomes the first rows of `stacked`
        self.fused = type(base_layer) is nn.Linear
        for name in decode.BUFFERS:  # the per-call buffers (hoe.model.decode), made at their first call
            self.register_buffer(name, None, persistent=False)
        decode.forget(self)
        self._stack()
        # a state dict loaded into the model, or any module holding this layer, changes weights in place (or,
        # with assign=True, replaces W): stack them again and have every layer rewrite its call's buffers
        self.register_load_state_dict_post_hook(lambda layer, incompatible: layer._reloaded())

    def _reloaded(self) -> None:
        self._stack()
        self.routing.changed()

    # ----- storage ------------------------------------------------------------------------------------------
    @property
    def lora_B(self) -> torch.Tensor:
        """The experts' stacked B, (out, Σr): a view of ``lora_Bt``."""
        return self.lora_Bt.t()

    @property
    def num_routers(self) -> int:
        return self.router_weight.shape[0]

    @property
    def lead(self) -> int:
        """Rows of ``stacked`` before the expert rows: W's when fused."""
        return self.out_features if self.fused else 0

    @property
    def mode(self) -> str | None:
        """How this layer computes the call in progress: the call's mode, or ``merged`` for a one-λ call on
        a merged copy of W (fused layers, when the model opted in); None outside a call."""
        mode = self.routing.mode
        return "merged" if mode == "one" and self.routing.merge and self.fused else mode

    def _stack(self) -> None:
        """(Re)build ``stacked`` = [W (fused only); A; router weights] and its bias [b or 0; 0; router bias]."""
        w = self.base_layer.weight
        r, n = self.rank, self.num_routers * self.num_experts
        stacked = w.new_empty(self.lead + r + n, self.in_features)
        bias = w.new_zeros(self.lead + r + n)
        base_bias = getattr(self.base_layer, "bias", None)
        with torch.no_grad():
            if self.fused:
                stacked[: self.lead] = w
                if base_bias is not None:
                    bias[: self.lead] = base_bias
            stacked[self.lead : self.lead + r] = self.lora_A
            stacked[self.lead + r :] = self.router_weight.reshape(n, self.in_features)
        self.register_buffer("stacked", stacked, persistent=False)
        self.register_buffer("stacked_bias", bias, persistent=False)
        self.has_bias = self.fused and base_bias is not None
        decode.forget(self)
        self._link()

    def _link(self) -> None:
        """Make the base layer's weight a view of ``stacked``'s first rows (one copy of W in memory)."""
        if self.fused:
            self.base_layer.weight = nn.Parameter(self.stacked[: self.out_features], requires_grad=False)

    def _apply(self, fn, recurse: bool = True):
        """``.to()``, ``.half()``…: move everything, then view W in the moved ``stacked`` again."""
        super()._apply(fn, recurse)
        decode.forget(self)
        self._link()
        return self

    # ----- forward ----------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.mode
        if mode is None:
            raise RuntimeError(
                "HoELinear called outside HoEModel.forward/generate: no preference is set (for activation "
                "checkpointing, use HoEModel.activation_checkpointing, which keeps the routing)."
            )
        if self.rank == 0:
            return self.base_layer(x)
        if mode == "routers" and (
            (
                torch.is_grad_enabled() and self.router_weight.requires_grad
            )  # routers train: gradients need them
            or self.router_weight.dtype
            != self.stacked.dtype  # float32 routers over a bf16 base: keep them exact
        ):
            return self.reference_forward(x)
        return decode.forward(self, x, mode)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = W x + B (g(x) ⊙ A x) with g from the call's gates and the routers' parameters, op by op.

        W is read through ``.data`` when fused: a call's buffers go in other rows of ``stacked`` (never W's),
        and a view of W saved for the backward pass must not fail autograd's version check when a later call
        writes them before this call's backward pass (activation checkpointing recomputes after other calls
        ran). W's own rows are written only when the layer is built or moved."""
        if self.fused:
            y = F.linear(x, self.stacked.data[: self.out_features], self.base_layer.bias)
        else:
            y = self.base_layer(x)
        gate = self.mixed_gate(x)[..., self.rank_owner]  # (B, 1 or T, Σr)
        return y + F.linear(F.linear(x, self.lora_A) * gate, self.lora_B)

    def mixed_gate(self, x: torch.Tensor) -> torch.Tensor:
        """w⁽²⁾(x) over the E experts for the call in progress: (B, 1 or T, E) (reference path, inspection)."""
        lora, routers = self.routing.gates(self.lora_A.device)
        batch = x.shape[0]
        if lora.shape[0] not in (1, batch):
            lora, routers = decode.rows(lora, batch), decode.rows(routers, batch)
        gate = lora[:, None, :].to(x.dtype)
        if (
            self.routing.mode == "routers"
        ):  # routers may train in float32 over a bf16 base (HoEModel.routers_to)
            w = self.router_weight
            active = self.routing.active(w.device)
            eta = router_mixture(x.to(w.dtype), w, self.router_bias, active).to(x.dtype)
            gate = gate + (routers[:, None, :, None].to(x.dtype) * eta).sum(-2)  # eta: (B, T, R, E)
        return gate

    # ----- experts and routers ------------------------------------------------------------------------------
    def add_router(self, bias: torch.Tensor | None = None) -> None:
        """Append one router's weights: W = 0 and ``bias`` (E,), by default 1 (uniform over the experts the
        routing state says it mixes: :meth:`RoutingState.add_router` comes first)."""
        w, b = self.router_weight, self.router_bias
        new_bias = b.new_ones(1, b.shape[1]) if bias is None else bias.to(b)[None]
        self.router_weight = nn.Parameter(torch.cat([w.data, w.new_zeros(1, *w.shape[1:])]))
        self.router_bias = nn.Parameter(torch.cat([b.data, new_bias]))
        self._stack()

    def expert_weights(self, e: int) -> LoraWeights | None:
        """Expert ``e``'s factors in this module (None if it does not adapt it)."""
        rows = self.rank_owner == e
        if not rows.any():
            return None
        return LoraWeights(A=self.lora_A[rows], B=self.lora_Bt[rows].t(), transposed=self.transposed)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, experts={self.layout}, routers={self.num_routers}"
