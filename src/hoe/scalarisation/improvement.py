"""Improvement over HoE without routers: Tchebycheff measured from the LoRA-only point at the anchor.

With y⁰ the mean rewards of HoE-LoRA (preference routing over the LoRA experts, no router) at the router's
anchor λ, measured before training (:mod:`hoe.training.calibration`),

    u(y) = min_{i: λ_i > 0} λ_i (y_i - y⁰_i)                                                      (Imp)

is positive only when the router moves past LoRA-only on every objective it weighs: giving up one objective
for another, which Tchebycheff from an ideal point z* rewards once the given-up objective stops binding, scores
below 0 here. It is Tchebycheff (Eq. 6) with z* = y⁰, so the weights run the same OMD
(:func:`hoe.scalarisation.tchebycheff.omd_update`): the objective furthest below its LoRA-only value gains
weight.
"""

from __future__ import annotations

import torch

from hoe.scalarisation.base import register_scalarisation
from hoe.scalarisation.tchebycheff import Tchebycheff, reward_point


@register_scalarisation("improvement")
def improvement(lam: torch.Tensor, baseline, alpha: float = 0.12, step_size: float = 3.0) -> Tchebycheff:
    """(Imp) at ``lam`` from ``baseline`` y⁰ (HoE-LoRA's mean rewards at ``lam``): Tchebycheff with z* = y⁰, OMD
    rate ``alpha`` and step size ``step_size``."""
    fix = "Measure HoE without routers at the anchor: one finite mean reward per objective."
    return Tchebycheff(lam, reward_point(baseline, lam, "baseline", fix), alpha, step_size)
