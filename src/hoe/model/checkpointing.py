"""Activation checkpointing that keeps the routing of the call it recomputes.

Checkpointing drops a block's activations in the forward pass and recomputes them in the backward pass. By
then :meth:`HoEModel.forward` has returned and left its ``routing()`` context, and on GPUs the backward pass
runs in autograd's own threads, which never see the forward's context variable: an HoE layer recomputed there
would find no preference. So each checkpointed block captures the routing of its call and re-enters it for the
recomputation (with an empty memo, so that every tensor derived from the routing weights is rebuilt exactly as
in the original forward: non-reentrant checkpointing checks that the recomputed tensors match).

The blocks are the entries of the base model's list of transformer layers (``model.layers`` for Llama,
``transformer.h`` for GPT-2): the outermost ``nn.ModuleList`` whose entries all hold HoE layers. This needs no
training mode and no private ``transformers`` API; it is independent of ``transformers``' own checkpointing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from hoe.model.context import current_routing, routing
from hoe.model.layer import HoELinear

_WRAPPED = "_hoe_checkpointed"


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of ``model``: the outermost ``nn.ModuleList`` whose every entry holds an HoE layer."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and all(_holds_hoe(b) for b in module):
            return list(module)
    return []


def _holds_hoe(block: nn.Module) -> bool:
    return any(isinstance(m, HoELinear) for m in block.modules())


def enable(model: nn.Module) -> int:
    """Checkpoint every block of ``model`` (when gradients are enabled); return how many blocks."""
    blocks = transformer_blocks(model)
    for block in blocks:
        if not getattr(block, _WRAPPED, False):
            block.forward = _checkpointed(block.forward)  # an instance attribute: hooks stay outside
            setattr(block, _WRAPPED, True)
    return len(blocks)


def disable(model: nn.Module) -> None:
    for block in transformer_blocks(model):
        if getattr(block, _WRAPPED, False):
            del block.forward  # back to the class's forward
            setattr(block, _WRAPPED, False)


def _checkpointed(forward: Callable) -> Callable:
    def run(*args, **kwargs):
        ctx = current_routing()
        if not torch.is_grad_enabled() or ctx is None:
            return forward(*args, **kwargs)

        def replay(*inner):
            with routing(ctx.fresh()):
                return forward(*inner, **kwargs)

        return checkpoint(replay, *args, use_reentrant=False)

    return run
