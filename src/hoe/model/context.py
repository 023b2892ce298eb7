"""The routing weights of the call in progress, passed to every HoE layer without global mutable state.

``HoEModel.forward`` / ``generate`` compute w⁽¹⁾ for the call's preference(s) and enter :func:`routing`; each
:class:`~hoe.model.layer.HoELinear` reads :func:`current_routing`. The value lives in a ``ContextVar``, so two
threads (or asyncio tasks) running the same model with different λ never see each other's weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch

from hoe.errors import ConfigError


@dataclass
class RoutingContext:
    """w⁽¹⁾ of one call, split by anchor kind.

    ``lora``: (Bw, E) weights of the anchors that are LoRA experts (each contributes its one-hot vector);
    ``routers``: (Bw, R_active) weights of the router experts that are used by some row; ``router_ids``: their
    indices; ``active_experts``: the LoRA experts any of them can reach, the only ones computed. Bw is 1 (one λ
    for the batch) or the batch size (one λ per row).
    """

    lora: torch.Tensor
    routers: torch.Tensor
    router_ids: torch.Tensor
    active_experts: torch.Tensor  # (E',) sorted: experts some row can reach (LoRA anchors or used routers)
    _memo: dict = field(default_factory=dict, repr=False)

    def rows(self, tensor_name: str, batch: int) -> torch.Tensor:
        """``lora`` or ``routers`` with one row per batch row (broadcast, or repeated for beams/samples)."""
        key = (tensor_name, batch)
        if key not in self._memo:
            t = getattr(self, tensor_name)
            if t.shape[0] not in (1, batch):
                if batch % t.shape[0]:
                    raise ConfigError(
                        f"{t.shape[0]} preferences for a batch of {batch} rows.",
                        field="preference",
                        value=f"{t.shape[0]} preferences",
                        fix="Give one preference for the batch or one per row.",
                    )
                t = t.repeat_interleave(batch // t.shape[0], dim=0)  # generate() expands rows this way
            self._memo[key] = t
        return self._memo[key]

    def fresh(self) -> RoutingContext:
        """The same weights with an empty memo: what a recomputation (activation checkpointing) must use, so
        that it rebuilds every derived tensor exactly as the original forward did."""
        return RoutingContext(self.lora, self.routers, self.router_ids, self.active_experts)

    def memo(self, key: object, make) -> torch.Tensor:
        """Cache a value derived from this call's weights (e.g. a gate expanded to a rank layout)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


_CURRENT: ContextVar[RoutingContext | None] = ContextVar("hoe_routing", default=None)


@contextmanager
def routing(ctx: RoutingContext) -> Iterator[RoutingContext]:
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def current_routing() -> RoutingContext | None:
    return _CURRENT.get()
