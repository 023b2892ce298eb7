"""Merge methods on hand-computed cases, and merging in ΔW space."""

from __future__ import annotations

import math

import pytest
import torch

from hoe.errors import ConfigError
from hoe.experts.merging import MERGE_METHODS, Option, get_merge_method, register_merge, resolve_options
from hoe.experts.merging.pcb import pcb
from hoe.experts.merging.task_arithmetic import task_arithmetic
from hoe.experts.merging.ties import ties


def test_registry_lists_methods_on_unknown_name():
    assert {"pcb", "ties", "task_arithmetic"} <= set(MERGE_METHODS)
    with pytest.raises(ConfigError, match="pcb"):
        get_merge_method("slerp")


def test_task_arithmetic_is_the_weighted_sum():
    d = torch.tensor([[[1.0, 2.0]], [[3.0, -4.0]]])  # (2, 1, 2)
    out = task_arithmetic(d, torch.tensor([0.25, 0.75]))
    assert torch.equal(out, torch.tensor([[2.5, -2.5]]))  # 0.25*1+0.75*3, 0.25*2-0.75*4


def test_ties_elects_sign_and_takes_disjoint_mean():
    d = torch.tensor([[2.0, -1.0, 0.5], [1.0, 3.0, -2.0]])
    lam = torch.tensor([0.5, 0.5])
    # density 1 (no trim). Mass: [1.5, 1.0, -0.75] -> signs [+, +, -].
    # entry 0: both agree -> (0.5*2 + 0.5*1)/1 = 1.5; entry 1: only expert 2 -> 3; entry 2: only expert 2 -> -2
    assert torch.equal(ties(d, lam, density=1.0), torch.tensor([1.5, 3.0, -2.0]))
    # density 1/3 keeps each expert's single largest |entry|: [2, 0, 0] and [0, 3, 0]
    assert torch.equal(ties(d, lam, density=1 / 3), torch.tensor([2.0, 3.0, 0.0]))
    # a density too small for one entry still keeps one (it used to keep none: an all-zero expert)
    assert torch.equal(ties(d, lam, density=1e-9), torch.tensor([2.0, 3.0, 0.0]))


def test_declared_options_are_checked_and_filled():
    assert resolve_options("ties", {"density": 1}) == {"density": 1.0, "scale": 1.0}
    assert resolve_options("pcb", {}) == {"keep": 0.9, "clip": 0.01}
    for method, options, field in [
        ("ties", {"density": 0.0}, "density"),  # (0, 1]: open at 0
        ("pcb", {"clip": 0.5}, "clip"),  # [0, 0.5): open at 0.5
        ("pcb", {"keep": float("nan")}, "keep"),
        ("task_arithmetic", {"density": 0.5}, "density"),  # not an option of task_arithmetic
        ("ties", {"density": "0.5"}, "density"),  # not a number
    ]:
        with pytest.raises(ConfigError) as caught:
            resolve_options(method, options)
        assert caught.value.field == field


def test_declared_options_must_match_the_signature():
    """The spec is what users are checked against, so a method whose spec drifts from its code is refused."""
    with pytest.raises(TypeError, match="differ"):

        @register_merge("drifted", options=[Option("density", 0.5, 0.0, 1.0)])
        def drifted(deltas, weights, density: float = 0.2):  # default differs from the declared 0.5
            return deltas.sum(0)

    assert "drifted" not in MERGE_METHODS


def pcb_reference(rows: list[list[float]], lam: list[float], keep: float) -> list[float]:
    """PCB-merging written out entry by entry (d < 100, so no magnitude clipping)."""
    n, d = len(rows), len(rows[0])
    T = [[n * lam[i] * v for v in rows[i]] for i in range(n)]
    col = [sum(T[i][j] for i in range(n)) for j in range(d)]
    scales = []
    for i in range(n):
        mag = [abs(v) for v in T[i]]
        lo, hi = min(mag), max(mag)
        intra = [math.exp(n * ((m - lo) / (hi - lo)) ** 2) for m in mag]
        score = [intra[j] * math.tanh(T[i][j] * col[j]) for j in range(d)]
        floor = sorted(score)[max(int(d * (1 - keep)), 1) - 1]
        score = [max(s, floor) for s in score]
        lo, hi = min(score), max(score)
        scales.append([(s - lo) / (hi - lo) for s in score])
    return [
        sum(T[i][j] * scales[i][j] for i in range(n)) / max(sum(scales[i][j] for i in range(n)), 1e-12)
        for j in range(d)
    ]


def test_pcb_matches_entrywise_reference():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    lam = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    expected = torch.tensor(
        pcb_reference(d.reshape(3, -1).tolist(), lam.tolist(), keep=0.8), dtype=torch.float64
    )
    torch.testing.assert_close(pcb(d, lam, keep=0.8).reshape(-1), expected)


def test_pcb_of_one_expert_keeps_it_but_drops_the_lowest_scored_entries():
    tau = torch.tensor([[0.5, -2.0, 1.0, 0.1]])
    out = pcb(tau[None], torch.tensor([1.0]), keep=0.75)
    # n=1: score = exp(minmax|τ|²)·tanh(τ²) increases with |τ|; the lowest 1/4 (entry 0.1) is dropped.
    assert torch.allclose(out, torch.tensor([[0.5, -2.0, 1.0, 0.0]]))
