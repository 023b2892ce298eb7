"""The parts a router run is set up from: the bundle with its new router, the value heads, the optimizer, the
objectives and the KL reference; and the check of OMD's scale once the rewards are measured.

The bundle loads on every process; the new router starts uniform over its experts (W = 0, b = 1) or, with
``--init hoe-lora``, at HoE-LoRA's weights at the anchor, and trains in float32 over any bundle dtype.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from hoe.distributed import Dist
from hoe.dtypes import DTYPES
from hoe.errors import ConfigError, HoEWarning
from hoe.objectives import Objective
from hoe.scalarisation.tchebycheff import omd_fixed_point
from hoe.training.router.config import RouterConfig, router_init, router_name
from hoe.training.trajectory import ValueHeads


def soup_reference(model, lam: torch.Tensor) -> torch.Tensor:
    """The linear soup Σ_i λ_i B_i A_i of the single-objective experts (the authors' Rewarded-Soups model)."""
    return model.soup_weights(lam)


def lora_hoe_reference(model, lam: torch.Tensor) -> torch.Tensor:
    """HoE without routers at λ (:meth:`HoEModel.lora_only_weights`)."""
    return model.lora_only_weights(lam)


REFERENCE_WEIGHTS = {"soup": soup_reference, "hoe-lora": lora_hoe_reference}
"""``--reference`` -> the KL reference's LoRA-expert weights w⁽²⁾ at λ, (E,)."""


@dataclass
class Policy:
    """The bundle with its new router (index ``router``), the value heads, their optimizer, the objectives and
    how the KL reference routes (``{"expert_weights": (E,)}``)."""

    model: Any  # an HoEModel
    tokenizer: Any
    objectives: list[Objective]  # in the bundle's objective order
    router: int
    value_heads: ValueHeads
    optimizer: torch.optim.Optimizer
    reference: dict


def load_policy(config: RouterConfig, dist: Dist, lam: torch.Tensor, specs: list[str]) -> Policy:
    """Load the bundle, add the new router at ``lam``, and build what trains it."""
    from hoe.generation.text import load_tokenizer
    from hoe.model.hoe_model import HoEModel

    model = HoEModel.from_pretrained(config.model, dtype=DTYPES[config.dtype], device=dist.device)
    tokenizer = load_tokenizer(model.base_ref)
    objectives = build_objectives(config, specs, model.objectives, tokenizer, dist)
    lora_only = lora_hoe_reference(model, lam)
    start = lora_only if router_init(config) == "hoe-lora" else None
    model.add_router(router_name(config, lam), lam, mixture=start)
    model.routers_to(torch.float32)  # over a bf16/fp16 bundle the routers still train in float32
    model.eval()  # no dropout: the policy that samples is the one that is scored and trained
    if config.gradient_checkpointing:
        model.activation_checkpointing(True)
    hidden = model.base_model.get_output_embeddings().weight.shape[1]
    heads = ValueHeads(hidden, len(objectives)).to(dist.device)
    optimizer = torch.optim.Adam(
        [
            {"params": model.router_parameters(), "lr": config.lr},
            {"params": list(heads.parameters()), "lr": config.value_lr or config.lr},
        ]
    )
    model.track(
        optimizer
    )  # each step (and a resumed state) refreshes the routers' rows the rollouts decode with
    reference = {"expert_weights": REFERENCE_WEIGHTS[config.reference](model, lam)}
    return Policy(model, tokenizer, objectives, len(model.routers) - 1, heads, optimizer, reference)


def build_objectives(
    config: RouterConfig, specs: list[str], names: list[str], tokenizer, dist: Dist
) -> list[Objective]:
    """The objectives, in the bundle's order; their names must be the bundle's objectives."""
    from hoe.objectives import ObjectiveContext, build_objectives

    context = ObjectiveContext(
        tokenizer=tokenizer, max_new_tokens=config.max_new_tokens, device=str(dist.device)
    )
    objectives = build_objectives(specs, context)
    if [o.name for o in objectives] != names:
        raise ConfigError(
            f"the objectives are named {[o.name for o in objectives]}, the bundle's {names}.",
            field="objective",
            value=specs,
            fix="Name each one like a bundle objective (NAME=KIND[:ARG]).",
        )
    return objectives


def check_omd_scale(
    lam: torch.Tensor,
    z_star: torch.Tensor,
    start: torch.Tensor,
    step_size: float,
    names: list[str],
    warn: bool,
) -> dict[str, float]:
    """Where OMD would settle at the initial policy's mean rewards ``start`` (returned by objective name, for
    the record); with ``warn``, a warning when that is so close to uniform that Tchebycheff would act like the
    linear scalarisation (rewards on a small scale for the step size η)."""
    fixed = omd_fixed_point(lam, z_star, start.to(lam), step_size)
    support = int((lam > 0).sum())
    if warn and support > 1 and float(fixed.max()) < 1.5 / support:
        warnings.warn(
            HoEWarning(
                f"at the initial policy's rewards OMD would settle at w = {[round(float(v), 3) for v in fixed]}, "
                "close to uniform: the rewards' gaps to z* are small next to 1 / omd_step_size, so the policy "
                "ascends a near-equal sum of the objectives' advantages, not their worst gap. Raise the OMD step size (omd_step_size, e.g. 30 for rewards "
                "in [0, 1]) or rescale the rewards."
            ),
            stacklevel=2,
        )
    return {n: round(float(v), 6) for n, v in zip(names, fixed)}
