"""The numbers of an evaluation (BENCH.md §1), from the per-prompt rewards of every (method, λ) point.

For each method: its points' mean reward vectors with standard errors over prompts, which are on its Pareto
front, the hypervolume of the means above the reference point with a 95 % bootstrap interval over prompts,
the ratio to the best baseline's hypervolume (every method but HoE and its ablation ``hoe-lora``) with its
interval (and, for ``hoe`` and ``hoe-lora``, the ratio to every other method: the project's claim is that
HoE's front beats each baseline, its own ablation included), controllability and the mean Tchebycheff utility
over the grid, and what decoding cost (tokens/s, forward passes per token).

The bootstrap draws prompt resamples once (fixed seed) and uses them for every method, so intervals and ratios
are paired: a prompt that is hard for every method is hard in the same resamples.

Methods that do not follow λ: ``base`` (kind ``constant``) is its one point at every λ of the grid, so its
controllability is 0 and its Tchebycheff utility is that of one point over the grid; ``experts`` (kind
``vertices``, one model per objective) has neither (``null``): a set of models is not a method that takes λ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from hoe.evaluation.metrics import (
    bootstrap_counts,
    bootstrap_hypervolumes,
    controllability,
    hypervolume,
    mean_tchebycheff,
    non_dominated,
    percentile_interval,
)
from hoe.evaluation.sweep import Point

LEVEL = 0.95
NOT_BASELINES = ("hoe", "hoe-lora")  # HoE and HoE without its routers


def summarise(
    points: dict[str, list[Point]],
    kinds: dict[str, str],
    grid: torch.Tensor,
    objectives: Sequence[str],
    ref: torch.Tensor,
    resamples: int,
    seed: int,
) -> dict:
    """``{"methods": {name: {...}}, "best_baseline": name | None}`` (see the module docstring)."""
    n = next(iter(points.values()))[0].rewards.shape[1]
    counts = bootstrap_counts(n, resamples, seed)  # (B, n), shared by every method
    methods, boots = {}, {}
    for name, pts in points.items():
        methods[name], boots[name] = _method(pts, kinds[name], grid, objectives, ref, counts)
    baselines = [m for m in methods if m not in NOT_BASELINES]
    best = max(baselines, key=lambda m: methods[m]["hypervolume"], default=None)
    for name, entry in methods.items():
        entry.update(_ratio(entry["hypervolume"], boots[name], best, methods, boots))
        if name in NOT_BASELINES:
            entry["hypervolume_ratios"] = {
                other: _pair(_ratio(entry["hypervolume"], boots[name], other, methods, boots))
                for other in methods
                if other != name
            }
    return {"methods": methods, "best_baseline": best}


def _method(
    pts: list[Point], kind: str, grid: torch.Tensor, objectives: Sequence[str], ref: torch.Tensor, counts
) -> tuple[dict, torch.Tensor]:
    per_prompt = torch.stack([p.per_prompt() for p in pts])  # (k, n, m)
    means = per_prompt.mean(1)  # (k, m)
    n = per_prompt.shape[1]
    se = per_prompt.std(1) / n**0.5 if n > 1 else torch.zeros_like(means)  # (k, m)
    front = non_dominated(means)
    hv = hypervolume(means, ref)
    boot = bootstrap_hypervolumes(per_prompt, ref, counts)  # (B,)
    seconds = sum(p.seconds for p in pts)
    passes = [p.forward_passes_per_token for p in pts]
    entry = {
        "kind": kind,
        "points": [_point(p, means[j], se[j], n, bool(front[j]), objectives) for j, p in enumerate(pts)],
        "hypervolume": _r(hv),
        "hypervolume_ci": [_r(x) for x in percentile_interval(boot, LEVEL)],
        **_preference_metrics(kind, pts, means, grid, ref, objectives),
        "tokens": sum(p.tokens for p in pts),  # generated: a copied point (sweep.copy_point) has none
        "copied_points": sum(p.copied_from is not None for p in pts),
        "generation_seconds": _r(seconds),
        "setup_seconds": _r(sum(p.setup_seconds for p in pts)),
        "tokens_per_second": _r(sum(p.tokens for p in pts) / seconds) if seconds > 0 else None,
        "forward_passes_per_token": _r(sum(passes) / len(passes)),
        "forward_passes_per_token_max": max(passes),
    }
    return entry, boot


def _preference_metrics(kind, pts, means, grid, ref, objectives) -> dict:
    if kind == "vertices":
        return {"controllability": None, "tchebycheff": None}
    if kind == "constant":
        lams, rewards = grid, means[:1].expand(grid.shape[0], -1)  # one point, whatever λ
    else:
        lams, rewards = torch.tensor([p.preference for p in pts], dtype=torch.float64), means
    rho = controllability(lams, rewards)
    return {
        "controllability": {o: _r(x) for o, x in zip(objectives, rho.tolist())},
        "tchebycheff": _r(mean_tchebycheff(lams, rewards, ref)),
    }


def _point(p: Point, mean, se, n: int, pareto: bool, objectives: Sequence[str]) -> dict:
    named = lambda t: {o: _r(x) for o, x in zip(objectives, t.tolist())}  # noqa: E731
    return {
        "label": p.label,
        "preference": None if p.preference is None else dict(zip(objectives, p.preference)),
        "mean": named(mean),
        "se": named(se),
        "n": n,
        "samples": p.rewards.shape[0],
        "pareto": pareto,
        "forward_passes_per_token": p.forward_passes_per_token,
        "copied_from": p.copied_from,
    }


def _ratio(hv: float, boot: torch.Tensor, best: str | None, methods: dict, boots: dict) -> dict:
    """HV / HV(best baseline) and its paired bootstrap interval; None when the baseline's HV is 0."""
    if best is None or methods[best]["hypervolume"] <= 0:
        return {"hypervolume_ratio": None, "hypervolume_ratio_ci": None}
    ratios = boot / boots[best]  # paired: the same resamples (a resample where the baseline has 0 gives inf)
    lo, hi = percentile_interval(ratios, LEVEL)
    return {
        "hypervolume_ratio": _r(hv / methods[best]["hypervolume"]),
        "hypervolume_ratio_ci": [_r(lo), _r(hi)],
    }


def _pair(ratio: dict) -> dict:
    return {"ratio": ratio["hypervolume_ratio"], "ci": ratio["hypervolume_ratio_ci"]}


def _r(x: float) -> float | None:
    """Rounded for the report; None for an unbounded or undefined value (JSON has no inf or NaN)."""
    return round(float(x), 6) if math.isfinite(x) else None
