"""Quality metrics of a method over a preference grid (BENCH.md §1). Objectives are maximised.

A method evaluated on a grid of k preferences gives ``lams`` (k, m) and its mean reward vectors ``rewards``
(k, m), row j achieved at preference j. From them:

* :func:`hypervolume`: the volume dominated by the reward vectors and bounded below by a reference point;
* :func:`controllability`: per objective, the Spearman correlation over the grid between λ_i and reward i;
* :func:`mean_tchebycheff`: the Tchebycheff utility ``min_{i: λ_i > 0} λ_i (r_i - ref_i)`` averaged over the
  grid. Objectives with λ_i = 0 are left out of the min: BENCH writes ``min_i``, but with them every boundary
  preference of the lattice (12 of 15 points for 3 objectives) would score 0 whatever the method does.
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
