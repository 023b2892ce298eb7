"""Quality metrics of a method over a preference grid (BENCH.md §1). Objectives are maximised.

A method evaluated on a grid of k preferences gives ``lams`` (k, m) and its mean reward vectors ``rewards``
(k, m), row j achieved at preference j. From them:

* :func:`hypervolume`: the volume dominated by the reward vectors and bounded below by a reference point;
* :func:`controllability`: per objective, the Spearman correlation over the grid between λ_i and reward i;
* :func:`mean_tchebycheff`: the Tchebycheff utility ``min_{i: λ_i > 0} λ_i (r_i - ref_i)`` averaged over the
  grid. Objectives with λ_i = 0 are left out of the min: BENCH writes ``min_i``, but with them every boundary
  preference of the lattice (12 of 15 points for 3 objectives) would score 0 whatever the method does;
* :func:`non_dominated`: which reward vectors are on the method's Pareto front;
* :func:`bootstrap_hypervolumes`: the hypervolume recomputed on prompt resamples (:func:`bootstrap_counts`),
  the same resamples for every method so that their intervals and ratios are paired.
"""

from __future__ import annotations

import numpy as np
import torch

from hoe.scalarisation.tchebycheff import tchebycheff_utility


def hypervolume(rewards: torch.Tensor, ref: torch.Tensor) -> float:
    """Lebesgue measure of ``∪_j [ref, r_j]`` (maximisation): (k, m), (m,) -> float.

    Points not above ``ref`` in every objective add nothing. Computed by ``moocore`` (exact, any m), a
    maintained implementation of the standard algorithms rather than one written here.
    """
    import moocore

    points = rewards.double().numpy()
    r = ref.double().numpy()
    inside = (points > r).all(-1)
    if not inside.any():
        return 0.0
    return float(moocore.hypervolume(points[inside], ref=r, maximise=True))


def non_dominated(rewards: torch.Tensor) -> torch.Tensor:
    """Mask of the points no other point dominates (maximisation): (k, m) -> (k,) bool.

    q dominates p when ``q >= p`` in every objective and ``q > p`` in one; equal points dominate neither.
    """
    geq = (rewards[None, :, :] >= rewards[:, None, :]).all(-1)  # (k, k): [p, q] = q >= p everywhere
    gt = (rewards[None, :, :] > rewards[:, None, :]).any(-1)  # (k, k): [p, q] = q > p somewhere
    return ~(geq & gt).any(1)


def bootstrap_counts(n: int, resamples: int, seed: int) -> torch.Tensor:
    """How often each of n prompts is drawn in each of ``resamples`` resamples of size n, with replacement:
    (B, n) float64, rows summing to n. Seeded, so every method (and every rerun) gets the same resamples."""
    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (resamples, n), generator=g)  # (B, n) prompt indices
    counts = torch.zeros(resamples, n, dtype=torch.float64)
    return counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))


def bootstrap_hypervolumes(per_prompt: torch.Tensor, ref: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``HV({(1/n) Σ_p c_bp R_jp : j})`` for each resample b: (k, n, m), (m,), (B, n) -> (B,).

    ``per_prompt[j, p]``: the reward vector of prompt p at point j (averaged over its samples).
    """
    n = per_prompt.shape[1]
    means = torch.einsum("bn,knm->bkm", counts, per_prompt.double()) / n  # (B, k, m)
    return torch.tensor([hypervolume(means[b], ref) for b in range(means.shape[0])], dtype=torch.float64)


def percentile_interval(samples: torch.Tensor, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap ``samples`` (B,), by percentiles; NaNs are ignored."""
    x = samples.double().numpy()
    tail = 50 * (1 - level)
    lo, hi = np.nanpercentile(x, [tail, 100 - tail])
    return float(lo), float(hi)


def controllability(lams: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of ``lams[:, i]`` and ``rewards[:, i]`` for each objective: (k, m) -> (m,).

    A reward that does not vary over the grid (a method that ignores λ) scores 0.
    """
    from scipy.stats import spearmanr

    out = []
    for i in range(lams.shape[1]):
        x, y = lams[:, i].double().numpy(), rewards[:, i].double().numpy()
        rho = spearmanr(x, y).statistic if np.ptp(x) > 0 and np.ptp(y) > 0 else 0.0
        out.append(float(rho))
    return torch.tensor(out, dtype=torch.float64)


def mean_tchebycheff(lams: torch.Tensor, rewards: torch.Tensor, ref: torch.Tensor) -> float:
    """``(1/k) Σ_j min_{i: λ_ji > 0} λ_ji (r_ji - ref_i)``: (k, m), (k, m), (m,) -> float."""
    utilities = [
        tchebycheff_utility(rewards[j : j + 1].double(), lams[j].double(), ref.double())
        for j in range(lams.shape[0])
    ]
    return float(torch.cat(utilities).mean())
