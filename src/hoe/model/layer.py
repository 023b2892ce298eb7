"""The HoE layer: a frozen base linear map plus E frozen LoRA experts mixed per token (METHOD.md §2(a).3, Eq. 11).

    y = W x + Σ_j w⁽²⁾_j(x) · B_j A_j x,      w⁽²⁾(x) = Σ_k w⁽¹⁾_k · η_k(x)

where an anchor k that is a LoRA expert contributes its one-hot vector and a router expert its mixture η_k(x).
The experts are stored stacked, A: (Σr, in) and B: (out, Σr); each rank row has a gate g, its expert's w⁽²⁾.

**Decoding cost.** Decoding is launch-bound (BENCH.md §3), so the layer computes what a call needs in the
fewest tensor ops per token. W, A and the routers' weights (R·E, in) live in one buffer ``stacked`` (the base
layer's weight is a view of its first rows, so nothing is stored twice), and a call's gates are written into
the layer once, when the call starts (:meth:`HoELinear.begin`), keeping only the rank rows of the experts the
call can reach (3 of 6 for a λ inside one cell of a 3-objective lattice). Per token, beyond the base matmul:

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
the set of reached experts changes, and one op per reached expert for the gates, skipped when they are the
last call's: a server or a sweep at one λ pays it once.
The per-call state is fixed tensors refreshed in place, so ``torch.compile(fullgraph=True)`` captures a
decode step whole (:class:`~hoe.model.hoe_model.HoEModel` serialises calls so that two never share them).
With gradients flowing into the routers (router training) the layer runs the reference computation instead,
which reads the routers' parameters directly: :meth:`HoELinear.reference_forward`, the definition every fast
path is tested against. A base layer that is not a plain ``nn.Linear`` (GPT-2's ``Conv1D``, a quantised
layer) keeps its own forward and ``stacked`` holds only the expert and router rows.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from hoe.io.adapters import LoraWeights
from hoe.model.router import router_mixture


class HoELinear(nn.Module):
    """Wraps a base ``nn.Linear`` or GPT-2 ``Conv1D`` (never changing its weight's values) with E LoRA experts."""

    CALL_STATE = ("stacked", "stacked_bias", "merged_weight", "call_gate", "call_mix", "call_Bt")
    """Buffers every call rewrites from the experts, the routers and its gates (W's rows of ``stacked`` aside,
    which are the base weight): derived state, not the model's."""

    def __init__(self, base_layer: nn.Module, experts: list[LoraWeights | None], num_routers: int = 0):
        super().__init__()
        self.base_layer = base_layer
        weight = base_layer.weight
        self.transposed = type(base_layer).__name__ == "Conv1D"  # GPT-2: weight stored (in, out)
        self.out_features, self.in_features = weight.shape[::-1] if self.transposed else weight.shape
        self.num_experts = len(experts)
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
        self._starts = [sum(ranks[:e]) for e in range(self.num_experts)]
        owner = [e for e, r in enumerate(ranks) for _ in range(r)]
        self.register_buffer(
            "rank_owner", torch.tensor(owner, dtype=torch.long, device=weight.device), persistent=False
        )  # (Σr,) expert of each rank row
        self.router_weight = nn.Parameter(weight.new_zeros(num_routers, self.num_experts, self.in_features))
        self.router_bias = nn.Parameter(weight.new_ones(num_routers, self.num_experts))
        self.register_buffer(
            "router_active",
            torch.ones(num_routers, self.num_experts, dtype=torch.bool, device=weight.device),
            persistent=False,
        )
        self._router_sets = [[True] * self.num_experts for _ in range(num_routers)]
        # a plain nn.Linear is fused: its weight becomes the first rows of `stacked`
        self.fused = type(base_layer) is nn.Linear
        self.mode: str | None = None  # set by begin(), for the call in progress
        self.merge = False  # opt-in: mode "one" runs on a merged working copy of W
        self.call_lora = self.call_routers = None  # (Bw, E), (Bw, R) float32: the reference path's gates
        self.register_buffer("merged_weight", None, persistent=False)
        self.register_buffer("call_gate", None, persistent=False)  # (Bw, 1, Σr), the first r columns used
        self.register_buffer("call_mix", None, persistent=False)  # (Bw, R·E, Σr), likewise
        self.register_buffer("call_Bt", None, persistent=False)  # (Σr, out): the kept rows of Bᵀ first
        self._r = self.rank  # rank rows the call in progress keeps (begin)
        self._held_rows = self._held_gates = None  # what the call state was last written from (begin)
        self._held_mode: str | None = None
        self._stack()

    # ----- storage ------------------------------------------------------------------------------------------
    @property
    def lora_B(self) -> torch.Tensor:
        """The experts' stacked B, (out, Σr): a view of ``lora_Bt``."""
        return self.lora_Bt.t()

    @property
    def num_routers(self) -> int:
        return self.router_weight.shape[0]

    @property
    def _lead(self) -> int:
        """Rows of ``stacked`` before the expert rows: W's when fused."""
        return self.out_features if self.fused else 0

    def _stack(self) -> None:
        """(Re)build ``stacked`` = [W (fused only); A; router weights] and its bias [b or 0; 0; router bias]."""
        w = self.base_layer.weight
        r, n = self.rank, self.num_routers * self.num_experts
        stacked = w.new_empty(self._lead + r + n, self.in_features)
        bias = w.new_zeros(self._lead + r + n)
        base_bias = getattr(self.base_layer, "bias", None)
        with torch.no_grad():
            if self.fused:
                stacked[: self._lead] = w
                if base_bias is not None:
                    bias[: self._lead] = base_bias
            stacked[self._lead : self._lead + r] = self.lora_A
            stacked[self._lead + r :] = self.router_weight.reshape(n, self.in_features)
        self.register_buffer("stacked", stacked, persistent=False)
        self.register_buffer("stacked_bias", bias, persistent=False)
        self.has_bias = self.fused and base_bias is not None
        self._held_rows = self._held_gates = None
        self._link()

    def _link(self) -> None:
        """Make the base layer's weight a view of ``stacked``'s first rows (one copy of W in memory)."""
        if self.fused:
            self.base_layer.weight = nn.Parameter(self.stacked[: self.out_features], requires_grad=False)

    def _apply(self, fn, recurse: bool = True):
        """``.to()``, ``.half()``…: move everything, then view W in the moved ``stacked`` again."""
        super()._apply(fn, recurse)
        self._held_rows = self._held_gates = None
        self._link()
        return self

    # ----- the call ---------------------------------------------------------------------------------------
    def begin(
        self,
        lora: torch.Tensor,
        routers: torch.Tensor,
        mode: str,
        compact: bool = True,
        on_device: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Write one call's gates into the layer (once per call, for every token it decodes).

        ``lora``: (Bw, E) float32 weights w⁽¹⁾ of the LoRA-expert anchors; ``routers``: (Bw, R) of the router
        experts (0 for the unused ones), both on the CPU; ``mode``: ``one`` (Bw = 1, no router weight),
        ``rows`` (no router weight) or ``routers``. With ``compact`` only the rank rows of the experts the call
        can reach (a LoRA anchor's weight, or a used router's active set) are kept, in order, so the
        per-token matmuls skip the others; which those are is known on the CPU, so nothing here waits for the
        device. Without it every rank row is kept. Per-call buffers have the full rank's capacity and are
        written in place (fixed addresses). The state is written in two parts, each skipped when what it is
        written from is what the layer holds already: the kept rows (:meth:`_write_rows`, from the set of
        reached experts) and the gates (:meth:`_write_gates`, from λ). ``on_device``: ``lora`` and ``routers``
        already on this layer's device (:class:`~hoe.model.hoe_model.HoEModel` copies them once per call).
        """
        lora, routers = lora.cpu(), routers.cpu()  # no-ops for the CPU tensors begin is given
        if on_device is None:
            on_device = lora.to(self.lora_A.device), routers.to(self.lora_A.device)
        self.call_lora, self.call_routers = on_device
        lam, rw = lora.tolist(), routers.tolist()
        experts = tuple(
            self._reached(lam, rw) if compact else (e for e in range(self.num_experts) if self.layout[e])
        )
        with torch.no_grad():
            rows = self._rows_key(mode, experts)
            if rows is None or not self._holds(rows):
                self._held_rows = self._held_gates = None  # until the writes below finish
                self._write_rows(experts, mode)
                rows = self._held_rows = self._rows_key(mode, experts)
            gates = None if rows is None else (rows[0], self.merge, lam, rw)
            if gates is None or gates != self._held_gates:
                self._held_gates = None
                self._held_mode = self._write_gates(experts, lam, mode)
                self._held_gates = gates
        self.mode = self._held_mode

    def set_merge(self, enable: bool) -> None:
        """Opt in or out of the merged working copy of W for calls with one λ (freed when disabled)."""
        self.merge = enable
        if not enable:
            self.merged_weight = None
        self._held_gates = None  # the next call writes its gates (and the merged copy) again

    def _reached(self, lam: list[list[float]], rw: list[list[float]]) -> list[int]:
        """The experts a call can reach, in order: a LoRA anchor's weight > 0 in some row, or in the active
        set of a router with weight > 0 in some row (and present in this module)."""
        used = [any(row[k] > 0 for row in rw) for k in range(self.num_routers)]
        sets = [s for u, s in zip(used, self._router_sets) if u]
        return [
            e
            for e in range(self.num_experts)
            if self.layout[e] and (any(row[e] > 0 for row in lam) or any(s[e] for s in sets))
        ]

    def _rows_key(self, mode: str, experts: tuple[int, ...]) -> tuple | None:
        """What :meth:`_write_rows` writes from: (mode, kept experts, the in-place version of each tensor it
        reads) and weak references to those tensors, so an edited weight, a router's optimiser step or a
        replaced tensor is seen (an edit through ``.data`` is not: it bypasses the version counter). None
        where versions are not tracked (inference tensors): then every call writes."""
        read = (
            self.stacked,
            self.lora_A,
            self.lora_Bt,
            self.router_weight,
            self.router_bias,
            self.router_active,
        )
        try:
            versions = tuple(t._version for t in read)
        except RuntimeError:
            return None
        return (mode, experts, versions), tuple(weakref.ref(t) for t in read)

    def _holds(self, key: tuple) -> bool:
        """Whether the layer holds the rows ``key`` describes: equal values, the very same tensors."""
        held = self._held_rows
        return (
            held is not None
            and held[0] == key[0]
            and all(a() is b() is not None for a, b in zip(held[1], key[1]))
        )

    def _write_rows(self, experts: tuple[int, ...], mode: str) -> None:
        """The kept experts' rows of A after W's in ``stacked`` (and, but with one λ, their rows of Bᵀ in
        ``call_Bt``), then with routers the router rows: what changes only with the set of reached experts."""
        lead, n = self._lead, self.num_routers * self.num_experts
        r = self._r = sum(self.layout[e] for e in experts)
        self.stacked_bias[lead : lead + r] = 0.0  # a routers call may have left router biases here
        bt = self._buffer("call_Bt", (self.rank, self.out_features))
        o = 0
        for s, k in _runs([(self._starts[e], self.layout[e]) for e in experts]):  # contiguous rows
            self.stacked[lead + o : lead + o + k] = self.lora_A[s : s + k]
            if mode != "one":
                bt[o : o + k] = self.lora_Bt[s : s + k]
            o += k
        if mode == "routers":  # the router rows right after the kept A rows: one matmul computes all
            self.stacked[lead + r : lead + r + n] = self.router_weight.reshape(n, self.in_features)
            masked = self.router_bias.masked_fill(~self.router_active, float("-inf"))
            self.stacked_bias[lead + r : lead + r + n] = masked.reshape(n)

    def _write_gates(self, experts: tuple[int, ...], lam: list[list[float]], mode: str) -> str:
        """The call's gates over the kept rank rows: with one λ folded into Bᵀ (and merged into a copy of W
        if asked), else in ``call_gate`` (and the routers' mixing matrix M in ``call_mix``). Returns the
        forward's mode (``merged`` for a merged one)."""
        bw, r, n = len(lam), self._r, self.num_routers * self.num_experts
        bt = self.call_Bt
        if mode != "one":
            gate = self._buffer("call_gate", (bw, 1, self.rank))
        if mode == "routers":
            mix = self._buffer("call_mix", (bw, n, self.rank))
            mix[..., :r] = 0.0
            mix_e = mix.view(bw, self.num_routers, self.num_experts, self.rank)  # rows k·E + e
        o = 0
        for e in experts:  # expert e's gate on kept rows o … o + r_e − 1
            s, k = self._starts[e], self.layout[e]
            if mode == "one":
                torch.mul(self.lora_Bt[s : s + k], lam[0][e], out=bt[o : o + k])  # g folded into Bᵀ
            else:
                gate[:, 0, o : o + k] = self.call_lora[:, e : e + 1]
            if mode == "routers":  # M: router k's w⁽¹⁾ on each rank row of expert e
                mix_e[:, :, e, o : o + k] = self.call_routers[:, :, None]
            o += k
        if mode == "one" and self.merge and self.fused:  # W + B diag(g) A, once
            merged = self._buffer("merged_weight", (self.out_features, self.in_features))
            lead = self._lead
            torch.addmm(self.stacked[:lead], bt[:r].t(), self.stacked[lead : lead + r], out=merged)
            return "merged"
        return mode

    def end(self) -> None:
        self.mode = None

    def _buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A per-call buffer of ``shape``, reused (and written in place) while its shape stays the same, so
        that a compiled step, CUDA graphs included, keeps reading the same memory."""
        t = getattr(self, name)
        if t is None or tuple(t.shape) != shape:
            t = self.lora_A.new_empty(shape)
            setattr(self, name, t)
        return t

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
        if mode == "merged":
            return F.linear(x, self.merged_weight, self.base_layer.bias)
        lead, r = self._lead, self._r
        if r == 0:  # no expert of this module is reached: the base layer alone
            return self.base_layer(x)
        if mode == "routers":
            end = lead + r + self.num_routers * self.num_experts
            z = F.linear(x, self.stacked[:end], self.stacked_bias[:end])
        else:
            z = F.linear(
                x, self.stacked[: lead + r], self.stacked_bias[: lead + r] if self.has_bias else None
            )
        h = z[..., lead : lead + r]
        if mode == "routers":
            scores = z[..., lead + r :]
            e = self.num_experts
            eta = torch.softmax(scores.unflatten(-1, (-1, e)), dim=-1).flatten(-2)  # (B, T, R·E)
            mix = self.call_mix[..., :r]
            if mix.shape[0] != eta.shape[0]:
                mix = mix.expand(eta.shape[0], -1, -1) if mix.shape[0] == 1 else _rows(mix, eta.shape[0])
            h = h * torch.baddbmm(self.call_gate[..., :r], eta, mix)
        elif mode == "rows":
            gate = self.call_gate[..., :r]
            h = h * (gate if gate.shape[0] in (1, h.shape[0]) else _rows(gate, h.shape[0]))
        y = z[..., :lead] if self.fused else self.base_layer(x)
        out = torch.addmm(y.flatten(0, -2), h.flatten(0, -2), self.call_Bt[:r])
        return out.view(*x.shape[:-1], self.out_features)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = W x + B (g(x) ⊙ A x) with g from the call's gates and the routers' parameters, op by op.

        W is read through ``.data`` when fused: :meth:`begin` rewrites other rows of ``stacked`` (never W's),
        and a saved view of W must not fail autograd's version check when a later call does so before this
        call's backward pass (activation checkpointing recomputes after other calls ran)."""
        if self.fused:
            y = F.linear(x, self.stacked.data[: self.out_features], self.base_layer.bias)
        else:
            y = self.base_layer(x)
        gate = self.mixed_gate(x)[..., self.rank_owner]  # (B, 1 or T, Σr)
        return y + F.linear(F.linear(x, self.lora_A) * gate, self.lora_B)

    def mixed_gate(self, x: torch.Tensor) -> torch.Tensor:
        """w⁽²⁾(x) over the E experts for the call in progress: (B, 1 or T, E) (reference path, inspection)."""
        lora, routers = self.call_lora, self.call_routers
        batch = x.shape[0]
        if lora.shape[0] not in (1, batch):
            lora, routers = _rows(lora, batch), _rows(routers, batch)
        gate = lora[:, None, :].to(x.dtype)
        if self.mode == "routers":  # routers may train in float32 over a bf16 base (HoEModel.routers_to)
            w = self.router_weight
            eta = router_mixture(x.to(w.dtype), w, self.router_bias, self.router_active).to(x.dtype)
            gate = gate + (routers[:, None, :, None].to(x.dtype) * eta).sum(-2)  # eta: (B, T, R, E)
        return gate

    # ----- experts and routers ------------------------------------------------------------------------------
    def add_router(self, active: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Append one router over the ``active`` (E,) bool experts: W = 0 and ``bias`` (E,), by default 1
        (uniform over ``active``)."""
        w, b = self.router_weight, self.router_bias
        new_bias = b.new_ones(1, b.shape[1]) if bias is None else bias.to(b)[None]
        self.router_weight = nn.Parameter(torch.cat([w.data, w.new_zeros(1, *w.shape[1:])]))
        self.router_bias = nn.Parameter(torch.cat([b.data, new_bias]))
        self.router_active = torch.cat([self.router_active, active.to(self.router_active)[None]])
        self._router_sets.append(active.cpu().bool().tolist())
        self._stack()

    def expert_weights(self, e: int) -> LoraWeights | None:
        """Expert ``e``'s factors in this module (None if it does not adapt it)."""
        rows = self.rank_owner == e
        if not rows.any():
            return None
        return LoraWeights(A=self.lora_A[rows], B=self.lora_Bt[rows].t(), transposed=self.transposed)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, experts={self.layout}, routers={self.num_routers}"


def _runs(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(start, length) spans of rows, adjacent ones merged: [(0, 2), (2, 3), (7, 1)] -> [(0, 5), (7, 1)]."""
    out: list[tuple[int, int]] = []
    for s, k in spans:
        if out and out[-1][0] + out[-1][1] == s:
            out[-1] = (out[-1][0], out[-1][1] + k)
        else:
            out.append((s, k))
    return out


def _rows(t: torch.Tensor, batch: int) -> torch.Tensor:
    """Per-preference rows repeated for a batch that ``generate`` expanded (samples, beams): row i of Bw
    becomes rows i·k … i·k + k − 1, k = batch / Bw."""
    return t.repeat_interleave(batch // t.shape[0], dim=0)
