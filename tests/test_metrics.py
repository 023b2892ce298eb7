"""Grid and quality metrics (BENCH.md §1) on cases worked out by hand."""

import pytest
import torch

from hoe.errors import PreferenceError
from hoe.evaluation.metrics import (
    bootstrap_counts,
    bootstrap_hypervolumes,
    controllability,
    hypervolume,
    mean_tchebycheff,
    non_dominated,
    percentile_interval,
)
from hoe.preference import simplex_lattice

D = torch.float64


def test_lattice_sizes_and_points():
    lattice = simplex_lattice(3, 4)
    assert lattice.shape == (15, 3)  # C(4 + 2, 2)
    assert torch.allclose(lattice.sum(-1), torch.ones(15, dtype=D))
    assert lattice[:3].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]  # vertices first
    assert len({tuple(p) for p in lattice.tolist()}) == 15 and ((lattice * 4).round() == lattice * 4).all()
    assert simplex_lattice(2, 2).tolist() == [[1, 0], [0, 1], [0.5, 0.5]]
    with pytest.raises(PreferenceError, match="lattice"):
        simplex_lattice(3, 0)


def test_hypervolume_by_hand():
    ref = torch.zeros(2, dtype=D)
    # two boxes [0,1]x[0,2] and [0,2]x[0,1]: 2 + 2 - 1 (overlap) = 3
    assert hypervolume(torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=D), ref) == pytest.approx(3.0)
    # 3-D: (2,1,1) and (1,2,1) -> 2 + 2 - 1 = 3; a dominated point (1,1,1) adds nothing
    pts = torch.tensor([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 1.0]], dtype=D)
    assert hypervolume(pts, torch.zeros(3, dtype=D)) == pytest.approx(3.0)
    # the BENCH reference point (0, -0.5, 0): a single point (0.5, 0.5, 0.5) spans 0.5 x 1.0 x 0.5
    bench_ref = torch.tensor([0.0, -0.5, 0.0], dtype=D)
    assert hypervolume(torch.tensor([[0.5, 0.5, 0.5]], dtype=D), bench_ref) == pytest.approx(0.25)
    # a point below the reference in one objective contributes nothing
    assert hypervolume(torch.tensor([[0.5, -0.6, 0.5]], dtype=D), bench_ref) == 0.0


def test_controllability_is_spearman_and_zero_when_ignored():
    lams = simplex_lattice(2, 4)  # λ_1: 1, 0, .75, .5, .25
    follows = lams.clone()  # reward i grows with λ_i: ρ = 1
    assert controllability(lams, follows).tolist() == pytest.approx([1.0, 1.0])
    assert controllability(lams, -follows).tolist() == pytest.approx([-1.0, -1.0])
    flat = torch.ones(5, 2, dtype=D)  # a method that ignores λ
    assert controllability(lams, flat).tolist() == [0.0, 0.0]


def test_mean_tchebycheff_by_hand():
    lams = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=D)
    rewards = torch.tensor([[0.4, 9.0], [0.2, 0.6]], dtype=D)
    ref = torch.tensor([0.0, 0.1], dtype=D)
    # row 1: only objective 1 counts: 1·0.4; row 2: min(0.5·0.2, 0.5·0.5) = 0.1. Mean 0.25
    assert mean_tchebycheff(lams, rewards, ref) == pytest.approx(0.25)


def test_non_dominated_and_hypervolume_of_hand_made_fronts():
    # 2-D: a staircase (1,3), (2,2), (3,1); (1,1) is dominated by all three, (0.5,3) by (1,3)
    front2 = torch.tensor([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [1.0, 1.0], [0.5, 3.0]], dtype=D)
    assert non_dominated(front2).tolist() == [True, True, True, False, False]
    # area above (0,0): columns [0,1] x 3 + [1,2] x 2 + [2,3] x 1 = 6; dominated points add nothing
    assert hypervolume(front2, torch.zeros(2, dtype=D)) == pytest.approx(6.0)
    # with ref (1, 1) only (2,2) spans an area, [1,2]x[1,2] = 1; (1,3) and (3,1) are flat boxes
    assert hypervolume(front2, torch.ones(2, dtype=D)) == pytest.approx(1.0)
    # 3-D: three boxes of volume 3 ((3,1,1) and its permutations), each pair and all three meet in the unit
    # cube: 3·3 − 3·1 + 1 = 7 by inclusion-exclusion. (2, 0.5, 2) is beaten by none of them in all three
    # objectives, (1,1,1) by each
    front3 = torch.tensor(
        [[1.0, 1.0, 3.0], [1.0, 3.0, 1.0], [3.0, 1.0, 1.0], [1.0, 1.0, 1.0], [2.0, 0.5, 2.0]], dtype=D
    )
    assert non_dominated(front3).tolist() == [True, True, True, False, True]
    assert hypervolume(front3[:4], torch.zeros(3, dtype=D)) == pytest.approx(7.0)
    # (2, 0.5, 2) spans 2·0.5·2 = 2, of which [0,1]x[0,.5]x[0,2] (1) lies in the box of (1,1,3) and
    # [1,2]x[0,.5]x[0,1] (0.5) in that of (3,1,1): it adds 2 − 1.5 = 0.5
    assert hypervolume(front3, torch.zeros(3, dtype=D)) == pytest.approx(7.5)
    # equal points dominate neither
    assert non_dominated(torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=D)).tolist() == [True, True]


def noisy_front(n: int, seed: int) -> torch.Tensor:
    """(k=2, n, m=2) per-prompt rewards around the points (1, 2) and (2, 1), uniform noise of width 1."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=D)
    return centres[:, None, :] + torch.rand(2, n, 2, generator=g, dtype=D) - 0.5


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_prompts():
    ref = torch.zeros(2, dtype=D)
    widths = []
    for n in (16, 400):
        per_prompt = noisy_front(n, seed=n)
        estimate = hypervolume(per_prompt.mean(1), ref)  # ≈ 1·2 + 2·1 − 1 = 3
        counts = bootstrap_counts(n, 500, seed=0)
        assert counts.shape == (500, n) and (counts.sum(1) == n).all()
        lo, hi = percentile_interval(bootstrap_hypervolumes(per_prompt, ref, counts))
        assert lo <= estimate <= hi and estimate == pytest.approx(3.0, abs=0.3)
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2  # the standard error shrinks like 1/sqrt(n): 5x here
    assert torch.equal(bootstrap_counts(16, 5, seed=3), bootstrap_counts(16, 5, seed=3))


def test_the_resamples_are_paired_across_methods():
    """A method compared with itself through the same resamples has a ratio of exactly 1 in every resample,
    although its own interval is wide; through independent resamples the ratio would spread."""
    per_prompt, ref = noisy_front(16, seed=1), torch.zeros(2, dtype=D)
    counts = bootstrap_counts(16, 200, seed=0)
    a, b = bootstrap_hypervolumes(per_prompt, ref, counts), bootstrap_hypervolumes(per_prompt, ref, counts)
    assert percentile_interval(a / b) == (1.0, 1.0)
    lo, hi = percentile_interval(a)
    assert hi - lo > 0.05
    unpaired = a / bootstrap_hypervolumes(per_prompt, ref, bootstrap_counts(16, 200, seed=1))
    assert percentile_interval(unpaired)[1] - percentile_interval(unpaired)[0] > 0.01
