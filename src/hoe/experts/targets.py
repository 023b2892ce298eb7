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


def block_linear_modules(model: nn.Module) -> dict[str, TargetModule]:
    """The linear projections inside the transformer blocks (what `hoe` adapts), by module path."""
    return {name: m for name, m in linear_modules(model).items() if _IN_BLOCK.search(f".{name}.")}


def matches(target: str, module: str) -> bool:
    """A target names a module by its full path or its leaf name (``q_proj`` hits ``model.layers.0...q_proj``)."""
    return target == module or module.rsplit(".", 1)[-1] == target


def find_target_modules(model: nn.Module, targets: Sequence[str] | None = None) -> list[TargetModule]:
    """List the adapted modules of ``model``: every linear projection inside the transformer blocks, or those
    that ``targets`` (leaf names such as ``q_proj`` or full module paths) name.

    Every target must name at least one such projection; a target naming ``lm_head``, an embedding, a norm
    or nothing at all is refused with the valid names, since silently adapting less than asked (or failing
    later on a tensor the base ties away, as ``lm_head`` often is) would be wrong without a word.
    """
    in_block = block_linear_modules(model)
    if not in_block:
        raise ConfigError(
            "the base model has no linear projection inside its transformer blocks.",
            field="base",
            fix="Pass a Hugging Face causal LM with numbered blocks (model.layers.N or transformer.h.N).",
        )
    if not targets:
        return list(in_block.values())
    bad = [t for t in targets if not any(matches(t, name) for name in in_block)]
    if bad:
        raise _bad_targets(bad, model, in_block)
    return [m for name, m in in_block.items() if any(matches(t, name) for t in targets)]


def leaf_names(modules: dict[str, TargetModule]) -> list[str]:
    """Distinct leaf names (``q_proj``...) of ``modules``, in model order."""
    return list(dict.fromkeys(name.rsplit(".", 1)[-1] for name in modules))


def _bad_targets(bad: list[str], model: nn.Module, in_block: dict[str, TargetModule]) -> ConfigError:
    """The error for targets naming no block projection; it says when they name another kind of module."""
    all_modules = [name for name, _ in model.named_modules() if name]
    elsewhere = [t for t in bad if any(matches(t, name) for name in all_modules)]
    unknown = [t for t in bad if t not in elsewhere]
    parts = []
    if elsewhere:
        parts.append(f"{elsewhere}: not inside a block or not linear (embeddings, norms, lm_head)")
    if unknown:
        parts.append(f"{unknown}: no such module in the base model")
    why = "; ".join(parts)
    return ConfigError(
        f"hoe adapts only linear projections inside the transformer blocks: {why}.",
        field="targets",
        value=bad,
        fix=f"Pass some of {leaf_names(in_block)} (or full module paths).",
    )


def skeleton_from_config(config: dict) -> nn.Module:
    """Build the causal LM described by a ``config.json`` dict on the meta device (no memory, no weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(config)
    model_type = cfg.pop("model_type", None)
    if model_type is None:
        raise ConfigError(
            "config.json has no model_type.", field="base", fix="Pass a Hugging Face causal LM folder."
        )
    try:
        hf_config = AutoConfig.for_model(model_type, **cfg)
    except (KeyError, ValueError) as e:
        raise ConfigError(
            f"transformers does not know model_type {model_type!r} ({e}).",
            field="base",
            value=model_type,
            fix="Pass a causal LM that your transformers version supports, or upgrade transformers.",
        ) from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)
