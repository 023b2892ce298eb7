"""Before step 1 of router training: the target point z* from data, and where the value heads start.

The authors set z* by hand per task (METHOD.md §2(b).2, §8.6) and name it as open. Here it is measured: on
``K`` training prompts (a seeded pick, one sample each, row-seeded so every source sees the same uniforms),
each single-objective LoRA expert i (the bundle with all weight on expert i) is sampled and scored by every
objective, and

    z*_j = max_i  R̄_{i,j}  +  δ · σ_j

the best mean reward of objective j among the single-objective experts, plus a margin of δ (``target_margin``,
default 0.1) standard deviations σ_j of objective j's scores pooled over all the calibration samples. So z*
is just beyond what any expert reaches on each objective (an ideal point), in each objective's own units,
and the OMD drive λ_j (z*_j - R̄_j) compares the objectives' shortfalls on their natural scales.

The same prompts are also sampled from the initial policy (the new router, uniform over its experts): the
value heads start with weight 0 and bias = that policy's mean score per objective, a constant baseline of
the right size instead of 0 (the smol3 experts were trained with RLOO and have no value heads to reuse).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoe.distributed import Dist
from hoe.objectives import score_matrix
from hoe.training.loop import derived_seed
from hoe.training.rollout import sample_rows

POLICY = "initial policy"  # not a valid expert name, so it never collides with one
LORA_ONLY = "hoe-lora at the anchor"  # likewise


@dataclass
class Calibration:
    z_star: torch.Tensor | None  # (m,) float64, None when not measured
    baseline: torch.Tensor | None  # (m,) float64, HoE-LoRA's means at the anchor; None when not measured
    value_init: torch.Tensor  # (m,) the initial policy's mean scores
    record: dict  # what the card reports


def calibration_prompts(prompts: list[str], k: int, seed: int) -> list[str]:
    """``k`` training prompts, a seeded pick (the same on every process)."""
    g = torch.Generator().manual_seed(derived_seed(seed, "calibration-prompts"))
    return [prompts[i] for i in torch.randperm(len(prompts), generator=g)[:k].tolist()]


def measure(run, sources: dict[str, dict], prompts: list[str]) -> dict[str, torch.Tensor]:
    """Score matrices of each source (``name -> route``) on ``prompts``: this process's rows only, (k_local, m).

    Row r gets the seed ``(seed, "calibration", r)`` whatever the source and the process.
    """
    c = run.config
    lo, hi = run.dist.shard(len(prompts))
    mine = prompts[lo:hi]
    seeds = [derived_seed(c.seed, "calibration", r) for r in range(lo, hi)]
    out = {}
    for name, route in sources.items():
        parts = []
        for i in range(0, len(mine), c.micro_batch):
            batch = sample_rows(
                run.model,
                run.tokenizer,
                mine[i : i + c.micro_batch],
                seeds[i : i + c.micro_batch],
                c.max_new_tokens,
                c.temperature,
                **route,
            )
            parts.append(score_matrix(run.objectives, batch.prompts, batch.responses))
        out[name] = torch.cat(parts) if parts else torch.zeros(0, len(run.objectives))
    return out


def global_moments(dist: Dist, scores: dict[str, torch.Tensor], k: int) -> tuple[dict, torch.Tensor]:
    """Per source the mean over all processes' rows, (m,); and σ, (m,), pooled over every source's rows."""
    means = {n: dist.sum(s.double().sum(0)) / k for n, s in scores.items()}
    pooled = torch.cat(list(scores.values())).double()
    total = k * len(scores)
    mean = dist.sum(pooled.sum(0)) / total
    var = (dist.sum((pooled**2).sum(0)) / total - mean**2).clamp_min(0) * total / max(total - 1, 1)
    return means, var.sqrt()


def calibrate(
    run, target: torch.Tensor | None, measure_target: bool, baseline: dict | None = None
) -> Calibration:
    """z* (measured when ``measure_target`` and no ``target`` is given), the mean rewards of the ``baseline``
    route (HoE-LoRA at the anchor, ``{"expert_weights": w}``) when given, and the value heads' start."""
    c, names = run.config, run.names
    prompts = calibration_prompts(run.prompts, c.calibration_prompts, c.seed)
    sources = {POLICY: {"preference": run.anchor}}
    if baseline is not None:
        sources[LORA_ONLY] = baseline
    experts = run.model.vertex_experts() if (measure_target and target is None) else []
    for k in experts:
        one_hot = torch.zeros(len(run.model.experts))
        one_hot[k] = 1.0
        sources[run.model.experts[k].name] = {"expert_weights": one_hot}
    means, std = global_moments(run.dist, measure(run, sources, prompts), len(prompts))
    z_star, source = target, "given" if target is not None else "none"
    if experts:
        best = torch.stack([means[run.model.experts[k].name] for k in experts]).max(0).values
        z_star, source = best + c.target_margin * std, "data"
    named = lambda t: {n: round(float(v), 6) for n, v in zip(names, t)}  # noqa: E731
    record = {
        "prompts": len(prompts),
        "z_star": None if z_star is None else named(z_star),
        "z_star_source": source,
        "margin": c.target_margin if source == "data" else None,
        "means": {n: named(m) for n, m in means.items()},
        "std": named(std),
        "value_init": named(means[POLICY]),
    }
    lora_only = means.get(LORA_ONLY)
    if lora_only is not None:
        record["baseline"] = named(lora_only)
    return Calibration(z_star, lora_only, means[POLICY], record)
