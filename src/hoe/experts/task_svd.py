"""task-SVD: compress a task vector into LoRA factors (METHOD.md §2(a).1).

For one weight delta Δ (out x in), with singular value decomposition Δ = U S Vᵀ:

    B = U_k · diag(√S_k)        (out x k)      -> PEFT ``lora_B``
    A = diag(√S_k) · V_kᵀ       (k x in)       -> PEFT ``lora_A``

so that B A is the best rank-k approximation of Δ (Eckart-Young), and the singular values are split evenly
between the factors. The energy kept is Σ_{i<=k} σ_i² / ‖Δ‖_F². Before the SVD the paper drops the globally
smallest-magnitude entries of the task vector (:func:`kth_smallest_abs` + :func:`sparsify`).

All functions here are pure tensor functions; SVDs run in fp32 (or fp64 if given) on the input's device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from hoe.conventions import Rank
from hoe.errors import ConfigError, bad_value

RANDOMIZED_MIN_DIM = 1024
"""``svd="auto"`` uses randomized SVD when an int rank is at most 1/8 of a matrix side of this size or more."""


@dataclass(frozen=True)
class LowRank:
    """LoRA factors of one matrix: ``delta ≈ B @ A``."""

    B: torch.Tensor  # (out, k)
    A: torch.Tensor  # (k, in)
    energy: float  # fraction of ‖Δ‖_F² kept, in [0, 1]

    @property
    def rank(self) -> int:
        return self.A.shape[0]


SVD_SOLVERS = ("auto", "full", "randomized")


def validate_rank(rank: Rank, field: str = "rank") -> Rank:
    """Check that a rank is an int >= 1 or an energy fraction in (0, 1] (see :mod:`hoe.conventions`)."""
    if isinstance(rank, bool) or not isinstance(rank, (int, float)):
        raise bad_value(field, rank, "Pass an int >= 1 or an energy fraction in (0, 1].")
    if isinstance(rank, int) and rank < 1:
        raise bad_value(field, rank, "A rank must be >= 1 (or an energy fraction in (0, 1]).")
    if isinstance(rank, float) and not 0.0 < rank <= 1.0:
        raise bad_value(field, rank, "An energy fraction must lie in (0, 1]; an int gives a rank.")
    return rank


def parse_rank(text: str, field: str = "rank") -> Rank:
    """``"64"`` -> 64 (a rank); ``"0.9"`` or ``"1.0"`` -> an energy fraction."""
    try:
        value: Rank = int(text) if text.strip().lstrip("+-").isdigit() else float(text)
    except ValueError:
        raise bad_value(field, text, "Pass an int rank (64) or an energy fraction (0.9).") from None
    return validate_rank(value, field)


def validate_svd(svd: str, rank: Rank | None = None, field: str = "svd") -> str:
    """Check the SVD solver name up front, so a typo is refused before any work (and never recorded).

    ``"randomized"`` needs an int ``rank`` (it computes only the top components, so it cannot tell how many an
    energy fraction needs); with a fraction it is refused rather than silently replaced by a full SVD.
    """
    if svd not in SVD_SOLVERS:
        raise bad_value(field, svd, f"Choose one of {', '.join(SVD_SOLVERS)}.")
    if svd == "randomized" and isinstance(rank, float):
        raise ConfigError(
            f"randomized SVD needs an int rank, but rank is the energy fraction {rank}.",
            field=field,
            value=svd,
            fix="Pass an int rank, or use full or auto.",
        )
    return svd


def choose_rank(singular_values: torch.Tensor, rank: Rank, max_side: int | None = None) -> int:
    """Number of components to keep: ``rank`` itself, or the smallest k reaching the energy fraction.

    ``singular_values``: (n,) in decreasing order; ``max_side``: the matrix's larger side (for the round-off
    tolerance of fraction 1.0). A zero matrix keeps one (zero) component.
    """
    n = singular_values.numel()
    max_side = max_side or n
    if isinstance(rank, int):
        return min(rank, n)
    if rank >= 1.0:  # everything but round-off: the numerical rank (tolerance as torch.linalg.matrix_rank)
        tol = singular_values.max() * max_side * torch.finfo(singular_values.dtype).eps
        return max(1, int((singular_values > tol).sum()))
    energy = singular_values.double().square()
    total = energy.sum()
    if total == 0:
        return 1
    cumulative = torch.cumsum(energy, 0) / total
    # tolerance: fp32 round-off in σ must not push k past the exact answer (0.9 of energies 9, 0.9, 0.1)
    k = int(torch.searchsorted(cumulative, torch.tensor(rank - 1e-6, dtype=cumulative.dtype)).item()) + 1
    return min(k, n)


def task_svd(
    delta: torch.Tensor, rank: Rank, svd: str = "auto", oversample: int = 10, n_iter: int = 4
) -> LowRank:
    """Truncated SVD of ``delta`` (out x in) with the even √S split.

    ``svd``: ``"full"`` (exact, ``torch.linalg.svd``), ``"randomized"`` (Halko et al., ``torch.svd_lowrank``,
    int ranks only) or ``"auto"`` (randomized for large matrices and small int ranks).
    """
    validate_svd(svd, rank)
    work = delta if delta.dtype in (torch.float32, torch.float64) else delta.float()
    total = work.double().square().sum()
    small_side = min(work.shape)
    randomized = isinstance(rank, int) and (
        svd == "randomized" or (svd == "auto" and small_side >= RANDOMIZED_MIN_DIM and rank * 8 <= small_side)
    )
    if randomized:
        q = min(int(rank) + oversample, small_side)
        U, S, V = torch.svd_lowrank(work, q=q, niter=n_iter)
        Vh = V.T
    else:
        U, S, Vh = torch.linalg.svd(work, full_matrices=False)
    k = choose_rank(S, rank, max(work.shape))
    root = S[:k].sqrt()
    B = U[:, :k] * root  # (out, k)
    A = root[:, None] * Vh[:k]  # (k, in)
    kept = S[:k].double().square().sum()
    energy = float(kept / total) if total > 0 else 1.0
    return LowRank(B=B.to(delta.dtype), A=A.to(delta.dtype), energy=min(energy, 1.0))


def retruncate(B: torch.Tensor, A: torch.Tensor, rank: Rank) -> LowRank:
    """task-SVD of ``B @ A`` without forming it: QR of both factors, then the SVD of a small r x r core.

    B A = Q_b (R_b R_aᵀ) Q_aᵀ with B = Q_b R_b and Aᵀ = Q_a R_a; the core's SVD gives that of B A.
    """
    dtype = torch.promote_types(B.dtype, torch.float32)
    Qb, Rb = torch.linalg.qr(B.to(dtype))  # (out, r), (r, r)
    Qa, Ra = torch.linalg.qr(A.to(dtype).T)  # (in, r), (r, r)
    core = task_svd(Rb @ Ra.T, rank, svd="full")  # (r, k), (k, r)
    return LowRank(B=(Qb @ core.B).to(B.dtype), A=(core.A @ Qa.T).to(A.dtype), energy=core.energy)


def sparsify(delta: torch.Tensor, threshold: float) -> torch.Tensor:
    """Zero every entry with ``|Δ| <= threshold`` (signs and other values kept)."""
    return torch.where(delta.abs() <= threshold, torch.zeros((), dtype=delta.dtype), delta)


def kth_smallest_abs(chunks: Callable[[], Iterable[torch.Tensor]], k: int) -> float:
    """Exact k-th smallest |x| (1-based) over all tensors yielded by ``chunks()``, in two streamed passes.

    Radix select on the bits of float32: for non-negative floats the int32 bit pattern is monotone in the
    value, so a histogram of the top 16 bits finds the bucket holding rank k, and a histogram of the low
    16 bits inside that bucket pins the exact value. Memory: two histograms, whatever the model size.
    Used to drop the smallest-magnitude entries of a whole task vector without holding it in memory.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")

    def bits(t: torch.Tensor) -> torch.Tensor:
        return t.detach().float().abs().flatten().view(torch.int32)

    high = torch.zeros(1 << 15, dtype=torch.int64)  # sign bit is 0, so the top 16 bits are < 2**15
    for t in chunks():
        high += torch.bincount(bits(t) >> 16, minlength=1 << 15)
    cum = torch.cumsum(high, 0)
    if k > int(cum[-1]):
        raise ValueError(f"k={k} exceeds the number of entries {int(cum[-1])}")
    bucket = int(torch.searchsorted(cum, torch.tensor(k)).item())
    below = int(cum[bucket - 1]) if bucket > 0 else 0
    low = torch.zeros(1 << 16, dtype=torch.int64)
    for t in chunks():
        b = bits(t)
        low += torch.bincount(b[(b >> 16) == bucket] & 0xFFFF, minlength=1 << 16)
    offset = int(torch.searchsorted(torch.cumsum(low, 0), torch.tensor(k - below)).item())
    return float(torch.tensor([(bucket << 16) | offset], dtype=torch.int32).view(torch.float32).item())
