"""Grid and quality metrics (BENCH.md §1) on cases worked out by hand."""

import pytest
import torch

from hoe.errors import PreferenceError
from hoe.evaluation.metrics import controllability, hypervolume, mean_tchebycheff
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
