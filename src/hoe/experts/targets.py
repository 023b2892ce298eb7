"""Which weight matrices become LoRA experts.

By default: every linear projection inside the transformer blocks, i.e. every ``nn.Linear`` or GPT-2
``Conv1D`` whose module path has a block index (``model.layers.3.mlp.up_proj``, ``transformer.h.0.attn.c_attn``).
Embeddings, norms and ``lm_head`` are therefore excluded. The architecture is read by building the model on
the ``meta`` device from its ``config.json``, so no weight is loaded and any Hugging Face causal LM works.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hoe.errors import ConfigError

_IN_BLOCK = re.compile(r"\.\d+\.")


@dataclass(frozen=True)
class TargetModule:
    """One adapted weight matrix. ``transposed`` is True for GPT-2 ``Conv1D`` (weight stored (in, out))."""

    name: str
    out_features: int
    in_features: int
    transposed: bool = False

    @property
    def weight_key(self) -> str:
        return f"{self.name}.weight"

    @property
    def max_rank(self) -> int:
        return min(self.out_features, self.in_features)


def _linear_shape(module: nn.Module) -> tuple[int, int, bool] | None:
    """(out, in, transposed) for a Linear or Conv1D module, else None."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features, False
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):  # transformers.pytorch_utils.Conv1D
        in_features, out_features = module.weight.shape
        return out_features, in_features, True
    return None


def linear_modules(model: nn.Module) -> dict[str, TargetModule]:
    """Every ``nn.Linear`` / ``Conv1D`` of ``model`` by module path (``lm_head`` included)."""
    out = {}
    for name, module in model.named_modules():
        shape = _linear_shape(module)
        if shape is not None:
            out[name] = TargetModule(name, *shape)
    return out


def find_target_modules(model: nn.Module, targets: Sequence[str] | None = None) -> list[TargetModule]:
    """List the adapted modules of ``model``.

    ``targets`` are module leaf names (``q_proj``) or full module paths; ``None`` means every linear
    projection inside the transformer blocks.
    """
    wanted = set(targets or [])

    def hit(name: str) -> bool:
        if targets:
            return name in wanted or name.rsplit(".", 1)[-1] in wanted
        return bool(_IN_BLOCK.search(f".{name}."))

    found = [m for name, m in linear_modules(model).items() if hit(name)]
    if not found:
        hint = (
            f"none of {sorted(wanted)} names a linear module" if targets else "no linear module inside blocks"
        )
        raise ConfigError(f"--targets: {hint}. Pass leaf names such as q_proj,v_proj or full module paths.")
    return found


def skeleton_from_config(config: dict) -> nn.Module:
    """Build the causal LM described by a ``config.json`` dict on the meta device (no memory, no weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(config)
    model_type = cfg.pop("model_type", None)
    if model_type is None:
        raise ConfigError("--base: config.json has no model_type; is this a Hugging Face model folder?")
    try:
        hf_config = AutoConfig.for_model(model_type, **cfg)
    except (KeyError, ValueError) as e:
        raise ConfigError(f"--base: transformers does not know model_type {model_type!r} ({e}).") from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)
