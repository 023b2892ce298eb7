"""Reward matrices sampled with common random numbers, for paired comparisons of models (BENCH.md §1).

Sample ``s`` of prompt ``i`` (of ``n``) is seeded ``s * n + i`` for every model (:mod:`hoe.generation.sampling`), so
two models draw the same uniforms on the same prompt and their per-prompt difference carries none of the
sampling noise they share.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from hoe.generation.text import generate_text
from hoe.objectives import score_matrix


def sample_seeds(sample: int, n: int, rows: range, seed: int = 0) -> list[int]:
    """Seeds of ``rows`` (prompt indices among n) for sample ``sample``: ``seed + sample * n + i``."""
    return [seed + sample * n + i for i in rows]


def seeded_batches(n: int, samples: int, batch: int, seed: int = 0) -> Iterator[tuple[int, range, list[int]]]:
    """The protocol's order of work: for each sample s, the prompts in batches of ``batch`` as
    ``(s, rows, seeds)``, row i seeded ``seed + s·n + i`` (so results do not depend on the batching)."""
    for s in range(samples):
        for start in range(0, n, batch):
            rows = range(start, min(start + batch, n))
            yield s, rows, sample_seeds(s, n, rows, seed)


def seeded_rewards(
    model,
    tokenizer,
    prompts: Sequence[str],
    objectives,
    preference=None,
    samples: int = 4,
    batch: int = 16,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
) -> torch.Tensor:
    """(n, m): each prompt's rewards averaged over its ``samples`` seeded responses (chat template)."""
    n = len(prompts)
    total = torch.zeros(n, len(objectives), dtype=torch.float64)
    for _, rows, seeds in seeded_batches(n, samples, batch):
        chunk = [prompts[i] for i in rows]
        texts = generate_text(model, tokenizer, chunk, preference, True, max_new_tokens, temperature, seeds)
        total[rows.start : rows.stop] += score_matrix(objectives, chunk, texts).double()
    return total / samples


def mean_se(x: torch.Tensor) -> dict[str, float]:
    """Mean and standard error of the mean of a (n,) sample, rounded for reports."""
    return {"mean": round(float(x.mean()), 4), "se": round(float(x.std() / x.numel() ** 0.5), 4)}
