"""Fixed mixtures of a bundle's LoRA experts, for comparisons against HoE with routers (METHOD.md Eq. 3, §2(c)).

* ``HoEModel.lora_only_weights``: what preference routing gives λ over the LoRA experts alone (HoE without
  routers);
* ``HoEModel.soup_weights``: the linear soup Σ_i λ_i B_i A_i of the single-objective experts;
* :class:`FixedMixture` wraps an :class:`~hoe.model.hoe_model.HoEModel` so that ``generate`` uses one such
  weight vector whatever preference it is given, and plugs into the same generation helpers as a model.
"""

from __future__ import annotations

import torch

from hoe.model.hoe_model import HoEModel


class FixedMixture(torch.nn.Module):
    """``model`` generating with fixed LoRA-expert weights ``weights`` (E,) instead of a preference."""

    def __init__(self, model: HoEModel, weights: torch.Tensor):
        super().__init__()
        self.model, self.weights = model, weights

    def get_input_embeddings(self):
        return self.model.base_model.get_input_embeddings()

    def generate(self, *args, **kwargs):
        return self.model.generate(*args, expert_weights=self.weights, **kwargs)
