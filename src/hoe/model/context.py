"""The routing weights of one call, computed once (on the CPU) and written into every HoE layer when it starts.

``HoEModel.forward`` / ``generate`` compute w⁽¹⁾ for the call's preference(s) (or take explicit LoRA-expert
weights), choose the cheapest way the layers can realise them (:attr:`RoutingContext.mode`), and write them
into the layers (:meth:`~hoe.model.layer.HoELinear.begin`) while holding the model's call lock: the layers
then read fixed tensors, which ``torch.compile`` traces without a graph break, and two threads calling the
same model with different λ take turns instead of seeing each other's weights.
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
