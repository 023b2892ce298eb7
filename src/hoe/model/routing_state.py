"""The routing of the call in progress: one :class:`RoutingState` per :class:`~hoe.model.hoe_model.HoEModel`,
filled once per call and only read by its HoE layers (vLLM's shape: one per-model state, not state per layer).

``HoEModel.forward`` / ``generate`` compute w⁽¹⁾ for the call's preference(s) (or take explicit LoRA-expert
weights) as a :class:`RoutingContext`, which also names the cheapest way the layers can realise them
(:attr:`RoutingContext.mode`). Entering the call writes it into the model's state while the model's call lock
is held: the layers then derive their fixed per-call buffers from the state
(:func:`hoe.model.decode.prepare`), which ``torch.compile`` traces without a graph break, and two threads
calling the same model with different λ take turns instead of seeing each other's weights.

The state also holds what the layers' buffers are derived from beyond the call: which experts each router
mixes (:attr:`RoutingState.membership`, the one store of it) and whether one-λ calls decode on a merged copy
of W. :attr:`RoutingState.version` counts the changes to those and to the weights the buffers copy; a layer
rewrites its buffers when the version it wrote them at is not the current one. Whatever edits the experts or
the routers' weights bumps it: ``add_router``, ``routers_to``, ``merge_single_preference``, loading routers,
``load_state_dict``, each step of (and each state loaded into) an optimizer given to ``HoEModel.track``, and
``HoEModel.weights_changed()`` after an edit made by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RoutingContext:
    """w⁽¹⁾ of one call, split by anchor kind, on the CPU.

    ``lora``: (Bw, E) float32 weights of the anchors that are LoRA experts (each contributes its one-hot
    vector); ``routers``: (Bw, R) float32 weights of every router expert (0 for those no row uses). Bw is 1
    (one λ for the batch) or the batch size (one λ per row).
    """

    lora: torch.Tensor
    routers: torch.Tensor

    def __post_init__(self) -> None:
        lora, routers = self.lora, self.routers
        if lora.shape[0] > 1 and not (routers > 0).any() and (lora == lora[:1]).all():
            object.__setattr__(self, "lora", lora[:1])  # the same gate for every row: one λ
            object.__setattr__(self, "routers", routers[:1])

    @property
    def mode(self) -> str:
        """``routers`` if some row uses a router expert, else ``one`` (one gate for all rows) or ``rows``."""
        if (self.routers > 0).any():
            return "routers"
        return "one" if self.lora.shape[0] == 1 else "rows"

    def repeated(self, k: int) -> RoutingContext:
        """Each row repeated k times in place, as ``generate`` expands a batch for samples or beams."""
        if k == 1 or self.lora.shape[0] == 1:
            return self
        return RoutingContext(self.lora.repeat_interleave(k, 0), self.routers.repeat_interleave(k, 0))


class RoutingState:
    """What every HoE layer of one model reads: the call in progress and the routers' membership."""

    def __init__(self, num_experts: int):
        self.num_experts = num_experts
        self.membership = torch.zeros(0, num_experts, dtype=torch.bool)  # (R, E): the experts router k mixes
        self.merge = False  # one-λ calls decode on a merged copy of W (HoEModel.merge_single_preference)
        self.version = 0
        self.call: RoutingContext | None = None
        self.mode: str | None = None  # the call's mode; None outside a call
        self.compact = True  # keep only the rank rows the call can reach
        self.lam: list[list[float]] = []  # the call's (Bw, E) LoRA-anchor weights, as Python floats
        self.rw: list[list[float]] = []  # the call's (Bw, R) router weights
        self._reached: list[bool] = [True] * num_experts  # per expert: can the call in progress reach it
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._masks: dict[torch.device, torch.Tensor] = {}

    @property
    def num_routers(self) -> int:
        return self.membership.shape[0]

    def changed(self) -> None:
        """What the layers' buffers are derived from changed (weights, routers, options): rewrite them."""
        self.version += 1
        self._masks.clear()

    def add_router(self, active: torch.Tensor) -> None:
        """Append a router mixing the ``active`` (E,) experts."""
        self.membership = torch.cat([self.membership, active.detach().cpu().bool()[None]])
        self.changed()

    def enter(self, ctx: RoutingContext, compact: bool = True) -> None:
        """Make ``ctx`` the call in progress (the caller holds the model's call lock)."""
        self.call, self.mode, self.compact = ctx, ctx.mode, compact
        lora, routers = ctx.lora.cpu(), ctx.routers.cpu()
        self.lam, self.rw = lora.tolist(), routers.tolist()
        self._reached = self._reachable()
        self._on_device = {torch.device("cpu"): (lora, routers)}

    def leave(self) -> None:
        self.call = self.mode = None
        self._on_device = {}

    def gates(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The call's (Bw, E) and (Bw, R) weights on ``device``, copied there once per call."""
        if device not in self._on_device:
            lora, routers = self._on_device[torch.device("cpu")]
            self._on_device[device] = (lora.to(device), routers.to(device))
        return self._on_device[device]

    def active(self, device: torch.device) -> torch.Tensor:
        """:attr:`membership` on ``device``, (R, E) bool, copied there once per change."""
        if device not in self._masks:
            self._masks[device] = self.membership.to(device)
        return self._masks[device]

    def kept(self, present: tuple[int, ...]) -> list[int]:
        """The experts whose rank rows a module holding ``present`` keeps for the call, in order: those the
        call can reach (worked out once per call, in :meth:`enter`)."""
        return [e for e in present if self._reached[e]]

    def _reachable(self) -> list[bool]:
        """Per expert: a LoRA anchor with weight > 0 in some row, or an expert of a router with weight > 0 in
        some row (exactly > 0: a weight of 1e-17 is still computed, so its rows are kept)."""
        used = [k for k in range(self.num_routers) if any(row[k] > 0 for row in self.rw)]
        sets = self.membership[used].any(0).tolist() if used else [False] * self.num_experts
        return [sets[e] or any(row[e] > 0 for row in self.lam) for e in range(self.num_experts)]
