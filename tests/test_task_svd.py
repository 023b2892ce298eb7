"""task-SVD math: exact recovery, Eckart-Young error, energy ranks, streamed quantiles."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hoe.errors import ConfigError
from hoe.experts.task_svd import (
    choose_rank,
    kth_smallest_abs,
    parse_rank,
    retruncate,
    sparsify,
    task_svd,
    validate_rank,
)


def with_spectrum(singular_values: list[float], out: int = 12, inp: int = 9, seed: int = 0) -> torch.Tensor:
    """A matrix with exactly the given singular values (random orthonormal U, V), fp64."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(out, len(singular_values), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(inp, len(singular_values), generator=g, dtype=torch.float64))
    return U @ torch.diag(torch.tensor(singular_values, dtype=torch.float64)) @ V.T


def test_rank_k_delta_is_recovered_exactly_by_rank_k():
    delta = with_spectrum([4.0, 2.0, 0.5])  # rank 3
    lr = task_svd(delta, 3)
    assert lr.rank == 3
    torch.testing.assert_close(lr.B @ lr.A, delta, atol=1e-10, rtol=0)
    assert lr.energy == pytest.approx(1.0)


def test_rank_1_leaves_exactly_sigma_2_as_spectral_error():
    delta = with_spectrum([5.0, 3.0, 1.0])
    lr = task_svd(delta, 1)
    spectral_error = torch.linalg.matrix_norm(delta - lr.B @ lr.A, ord=2)
    assert spectral_error.item() == pytest.approx(3.0, abs=1e-10)
    assert lr.energy == pytest.approx(25 / 35)


def test_singular_values_are_split_evenly_between_factors():
    lr = task_svd(with_spectrum([9.0, 4.0]), 2)
    # B = U √S and A = √S Vᵀ: column norms of B equal row norms of A equal √σ = (3, 2)
    torch.testing.assert_close(lr.B.norm(dim=0), torch.tensor([3.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(lr.A.norm(dim=1), torch.tensor([3.0, 2.0], dtype=torch.float64))


@pytest.mark.parametrize(("fraction", "expected_k"), [(0.5, 1), (0.9, 1), (0.9001, 2), (0.99, 2), (1.0, 3)])
def test_energy_fraction_picks_smallest_k(fraction, expected_k):
    # energies 9, 0.9, 0.1 of 10: cumulative 0.90, 0.99, 1.0
    s = torch.tensor([9.0, 0.9, 0.1]).sqrt()
    assert choose_rank(s, fraction) == expected_k
    assert task_svd(with_spectrum(s.tolist()), fraction).rank == expected_k


def test_randomized_svd_matches_full_on_low_rank_matrix():
    delta = with_spectrum([3.0, 2.0, 1.0], out=200, inp=150).float()
    full = task_svd(delta, 3, svd="full")
    rand = task_svd(delta, 3, svd="randomized")
    torch.testing.assert_close(rand.B @ rand.A, full.B @ full.A, atol=1e-4, rtol=0)


def test_retruncate_equals_task_svd_of_the_product():
    g = torch.Generator().manual_seed(1)
    B, A = (
        torch.randn(20, 6, generator=g, dtype=torch.float64),
        torch.randn(6, 15, generator=g, dtype=torch.float64),
    )
    a, b = retruncate(B, A, 3), task_svd(B @ A, 3, svd="full")
    torch.testing.assert_close(a.B @ a.A, b.B @ b.A, atol=1e-9, rtol=0)
    assert a.energy == pytest.approx(b.energy)


def test_sparsify_drops_entries_at_or_below_threshold():
    x = torch.tensor([[0.1, -0.2, 0.3], [-0.05, 0.2, -0.4]])
    expected = torch.tensor([[0.0, 0.0, 0.3], [0.0, 0.0, -0.4]])
    assert torch.equal(sparsify(x, 0.2), expected)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=300), st.data())
def test_streamed_kth_smallest_abs_is_exact(values, data):
    k = data.draw(st.integers(1, len(values)))
    t = torch.tensor(values, dtype=torch.float32)
    chunks = [t[: len(values) // 3], t[len(values) // 3 :]]
    assert kth_smallest_abs(lambda: iter(chunks), k) == torch.sort(t.abs()).values[k - 1].item()


def test_rank_validation_and_parsing():
    assert parse_rank("64") == 64 and isinstance(parse_rank("64"), int)
    assert parse_rank("0.9") == 0.9 and parse_rank("1.0") == 1.0
    for bad in ["0", "-3", "1.5", "0.0", "abc"]:
        with pytest.raises(ConfigError, match="^rank: "):
            parse_rank(bad)
    with pytest.raises(ConfigError):
        validate_rank(True)
