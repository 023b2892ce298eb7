"""Activation checkpointing that keeps the routing of the call it recomputes.

Checkpointing drops a block's activations in the forward pass and recomputes them in the backward pass. By
then :meth:`HoEModel.forward` has returned and its gates are gone from the layers (or another call's are
there), and on GPUs the backward pass runs in autograd's own threads. So each checkpointed block captures the
routing of its call and re-enters it (:meth:`HoEModel.calling`) for the recomputation, which then computes
exactly what the original forward did.

The blocks are the entries of the base model's list of transformer layers (``model.layers`` for Llama,
``transformer.h`` for GPT-2): the outermost ``nn.ModuleList`` whose entries all hold HoE layers. This needs no
training mode and no private ``transformers`` API; it is independent of ``transformers``' own checkpointing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

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


def enable(model) -> int:
    """Checkpoint every block of the :class:`HoEModel` ``model`` (when gradients are enabled); return how
    many blocks."""
    blocks = transformer_blocks(model.base_model)
    for block in blocks:
        if not getattr(block, _WRAPPED, False):
            block.forward = _checkpointed(block.forward, model)  # an instance attribute: hooks stay outside
            setattr(block, _WRAPPED, True)
    return len(blocks)


def disable(model: nn.Module) -> None:
    for block in transformer_blocks(model):
        if getattr(block, _WRAPPED, False):
            del block.forward  # back to the class's forward
            setattr(block, _WRAPPED, False)


def _checkpointed(forward: Callable, model) -> Callable:
    def run(*args, **kwargs):
        ctx = model.routing.call
        if not torch.is_grad_enabled() or ctx is None:
            return forward(*args, **kwargs)
        first = [True]

        def replay(*inner):
            if first[0]:  # the forward pass itself, inside the call
                first[0] = False
                return forward(*inner, **kwargs)
            with model.calling(ctx):  # the recomputation, after the call
                return forward(*inner, **kwargs)

        return checkpoint(replay, *args, use_reentrant=False)

    return run
