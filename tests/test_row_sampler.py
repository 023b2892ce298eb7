"""RowSampler: per-row temperature, top-p and seed; one value for all rows draws what that value per row draws."""

from __future__ import annotations

import torch

from hoe.generation.sampling import RowSampler, nucleus


def test_one_temperature_for_all_rows_draws_what_it_draws_per_row():
    scores = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    a, b = RowSampler([1, 2, 3, 4], 0.7), RowSampler([1, 2, 3, 4], [0.7] * 4, [1.0] * 4)
    for _ in range(5):
        assert torch.equal(a(None, scores).argmax(-1), b(None, scores).argmax(-1))


def test_greedy_rows_and_nucleus_rows_in_one_batch():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 3))
    sampler = RowSampler([0, 1, 2], [0.0, 1.0, 1.0], [1.0, 0.6, 1.0])
    for _ in range(20):
        picked = sampler(None, scores).argmax(-1)
        assert picked[0] == 0 and picked[1] in (0, 1)  # greedy; the nucleus {0.5, 0.3} reaches 0.6


def test_nucleus_keeps_the_fewest_most_likely_tokens_reaching_p():
    p = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.1, 0.5, 0.3, 0.1]])
    kept = nucleus(p, torch.tensor([0.5, 0.81])) > 0
    assert kept.tolist() == [[False, True, False, False], [True, True, True, True]]  # ties at 0.1 kept
