"""The HoE layer's decode fast paths (the table in :mod:`hoe.model.layer`) and the per-call buffers they read.

When a call starts, :func:`prepare` derives each layer's buffers from the model's
:class:`~hoe.model.routing_state.RoutingState`, in two parts, each skipped when what it is derived from is what
the layer holds already: the kept rank rows (:func:`write_rows`, from the state's version, the call's mode
and the set of reached experts) and the gates (:func:`write_gates`, from λ and the merge option). Per token,
:func:`forward` then computes the call in the fewest tensor ops. The buffers have the full rank's capacity
and are written in place, so a compiled decode step (CUDA graphs included) keeps reading the same memory.
Every path here equals :meth:`HoELinear.reference_forward <hoe.model.layer.HoELinear.reference_forward>`
(tests/test_decode_paths.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # the layer calls these functions; typing only
    from hoe.model.layer import HoELinear

BUFFERS = ("merged_weight", "call_gate", "call_mix", "call_Bt")
"""The per-call buffers a layer registers (None until a call needs them)."""


def forget(layer: HoELinear) -> None:
    """The layer holds no call's buffers (they are rewritten at the next call): after it is built, restacked
    or moved, and while a write is under way."""
    layer.kept = layer.rank  # rank rows the call in progress keeps
    layer.held_rows = layer.held_gates = None  # what the buffers were last derived from


def prepare(layer: HoELinear) -> None:
    """Derive the layer's buffers for the call in its routing state (once per call, for every token)."""
    state = layer.routing
    experts = tuple(state.kept(layer.present) if state.compact else layer.present)
    with torch.no_grad():
        rows = (state.version, state.mode, experts)
        if rows != layer.held_rows:
            forget(layer)  # until the writes below finish
            write_rows(layer, experts, state.mode)
            layer.held_rows = rows
        gates = (rows, state.merge, state.lam, state.rw)
        if gates != layer.held_gates:
            layer.held_gates = None
            write_gates(layer, experts, state.mode)
            layer.held_gates = gates


def write_rows(layer: HoELinear, experts: tuple[int, ...], mode: str) -> None:
    """The kept experts' rows of A after W's in ``stacked`` (and, but with one λ, their rows of Bᵀ in
    ``call_Bt``), then with routers the router rows: what changes only with the set of reached experts."""
    lead, n = layer.lead, layer.num_routers * layer.num_experts
    r = layer.kept = sum(layer.layout[e] for e in experts)
    layer.stacked_bias[lead : lead + r] = 0.0  # a routers call may have left router biases here
    bt = _buffer(layer, "call_Bt", (layer.rank, layer.out_features))
    o = 0
    for s, k in runs([(layer.starts[e], layer.layout[e]) for e in experts]):  # contiguous rows
        layer.stacked[lead + o : lead + o + k] = layer.lora_A[s : s + k]
        if mode != "one":
            bt[o : o + k] = layer.lora_Bt[s : s + k]
        o += k
    if mode == "routers":  # the router rows right after the kept A rows: one matmul computes all
        layer.stacked[lead + r : lead + r + n] = layer.router_weight.reshape(n, layer.in_features)
        active = layer.routing.active(layer.router_bias.device)
        masked = layer.router_bias.masked_fill(~active, float("-inf"))
        layer.stacked_bias[lead + r : lead + r + n] = masked.reshape(n)


def write_gates(layer: HoELinear, experts: tuple[int, ...], mode: str) -> None:
    """The call's gates over the kept rank rows: with one λ folded into Bᵀ (and merged into a copy of W if
    the model opted in), else in ``call_gate`` (and the routers' mixing matrix M in ``call_mix``)."""
    state = layer.routing
    lam = state.lam
    lora, routers = state.gates(layer.lora_A.device)
    bw, r, n = len(lam), layer.kept, layer.num_routers * layer.num_experts
    bt = layer.call_Bt
    if mode != "one":
        gate = _buffer(layer, "call_gate", (bw, 1, layer.rank))
    if mode == "routers":
        mix = _buffer(layer, "call_mix", (bw, n, layer.rank))
        mix[..., :r] = 0.0
        mix_e = mix.view(bw, layer.num_routers, layer.num_experts, layer.rank)  # rows k·E + e
    o = 0
    for e in experts:  # expert e's gate on kept rows o … o + r_e − 1
        s, k = layer.starts[e], layer.layout[e]
        if mode == "one":
            torch.mul(layer.lora_Bt[s : s + k], lam[0][e], out=bt[o : o + k])  # g folded into Bᵀ
        else:
            gate[:, 0, o : o + k] = lora[:, e : e + 1]
        if mode == "routers":  # M: router k's w⁽¹⁾ on each rank row of expert e
            mix_e[:, :, e, o : o + k] = routers[:, :, None]
        o += k
    if layer.mode == "merged":  # W + B diag(g) A, once
        merged = _buffer(layer, "merged_weight", (layer.out_features, layer.in_features))
        lead = layer.lead
        torch.addmm(layer.stacked[:lead], bt[:r].t(), layer.stacked[lead : lead + r], out=merged)


def forward(layer: HoELinear, x: torch.Tensor, mode: str) -> torch.Tensor:
    """The call's output through the fast path of its ``mode`` (the layer's table)."""
    if mode == "merged":
        return F.linear(x, layer.merged_weight, layer.base_layer.bias)
    lead, r = layer.lead, layer.kept
    if r == 0:  # no expert of this module is reached: the base layer alone
        return layer.base_layer(x)
    if mode == "routers":
        end = lead + r + layer.num_routers * layer.num_experts
        z = F.linear(x, layer.stacked[:end], layer.stacked_bias[:end])
    else:
        z = F.linear(x, layer.stacked[: lead + r], layer.stacked_bias[: lead + r] if layer.has_bias else None)
    h = z[..., lead : lead + r]
    if mode == "routers":
        scores = z[..., lead + r :]
        e = layer.num_experts
        eta = torch.softmax(scores.unflatten(-1, (-1, e)), dim=-1).flatten(-2)  # (B, T, R·E)
        mix = layer.call_mix[..., :r]
        if mix.shape[0] != eta.shape[0]:
            mix = mix.expand(eta.shape[0], -1, -1) if mix.shape[0] == 1 else rows(mix, eta.shape[0])
        h = h * torch.baddbmm(layer.call_gate[..., :r], eta, mix)
    elif mode == "rows":
        gate = layer.call_gate[..., :r]
        h = h * (gate if gate.shape[0] in (1, h.shape[0]) else rows(gate, h.shape[0]))
    y = z[..., :lead] if layer.fused else layer.base_layer(x)
    out = torch.addmm(y.flatten(0, -2), h.flatten(0, -2), layer.call_Bt[:r])
    return out.view(*x.shape[:-1], layer.out_features)


def release_merged(layer: HoELinear) -> None:
    """Free the merged working copy of W (the model opted out)."""
    layer.merged_weight = None


def _buffer(layer: HoELinear, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A per-call buffer of ``shape``, reused (and written in place) while its shape stays the same, so
    that a compiled step, CUDA graphs included, keeps reading the same memory."""
    t = getattr(layer, name)
    if t is None or tuple(t.shape) != shape:
        t = layer.lora_A.new_empty(shape)
        setattr(layer, name, t)
    return t


def runs(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(start, length) spans of rows, adjacent ones merged: [(0, 2), (2, 3), (7, 1)] -> [(0, 5), (7, 1)]."""
    out: list[tuple[int, int]] = []
    for s, k in spans:
        if out and out[-1][0] + out[-1][1] == s:
            out[-1] = (out[-1][0], out[-1][1] + k)
        else:
            out.append((s, k))
    return out


def rows(t: torch.Tensor, batch: int) -> torch.Tensor:
    """Per-preference rows repeated for a batch that ``generate`` expanded (samples, beams): row i of Bw
    becomes rows i·k … i·k + k − 1, k = batch / Bw."""
    return t.repeat_interleave(batch // t.shape[0], dim=0)
