"""Sampling with one seed per row, so a prompt's sample does not depend on what else is in its batch.

``transformers`` samples a whole batch from torch's global generator: the tokens of row i then depend on the
other rows and on the batch size. Evaluations need a fixed seed per prompt (BENCH.md §1) and comparisons of two
models on the same prompt are sharper with *common random numbers*. :class:`RowSeededSampler` does both: each
row owns a ``torch.Generator`` and draws its next token by inverse-CDF sampling from one uniform number, so two
models given the same seed use the same uniforms and pick the same token wherever their distributions agree.

It is a ``LogitsProcessor`` that leaves only the drawn token finite; ``generate`` then runs greedily
(``do_sample=False``) and picks it. No ``transformers`` API takes per-row generators, hence this class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from hoe.errors import ConfigError, bad_value


def inverse_cdf_sample(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``y_b = min{ j : Σ_{i ≤ j} p_{b,i} > u_b · Σ_i p_{b,i} }``: one token per row from one uniform per row.

    probs: (B, V) non-negative, each row with positive mass; u: (B,) in [0, 1). Returns (B,) int64. A
    token of probability 0 is never returned (strict ``>``), and ``u ~ U[0, 1)`` gives ``P(y_b = j) = p_{b,j}``.
    """
    cdf = probs.cumsum(-1)  # (B, V)
    target = (u.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)  # (B, 1)
    index = torch.searchsorted(cdf, target, right=True).squeeze(-1)  # (B,)
    return index.clamp(max=probs.shape[-1] - 1)


class RowSeededSampler:
    """``transformers`` logits processor: row b samples from ``softmax(scores_b / temperature)`` with seed b.

    Put it last in the processor list and generate with ``do_sample=False``.
    """

    def __init__(self, seeds: Sequence[int], temperature: float):
        if not (math.isfinite(temperature) and temperature > 0):
            raise bad_value("temperature", temperature, "Sampling needs a finite temperature > 0.")
        self.seeds = [int(s) for s in seeds]
        self.temperature = float(temperature)
        self._generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.seeds):
            raise ConfigError(
                f"{len(self.seeds)} seeds for {scores.shape[0]} rows.",
                field="seed",
                value=self.seeds,
                fix="Pass one seed per generated row (num_return_sequences and beams multiply the rows).",
            )
        if self._generators is None:  # made on first use, on the device the scores live on
            self._generators = [torch.Generator(scores.device).manual_seed(s) for s in self.seeds]
        u = torch.cat([torch.rand(1, generator=g, device=scores.device) for g in self._generators])  # (B,)
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)  # (B, V)
        tokens = inverse_cdf_sample(probs, u)  # (B,)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, tokens.unsqueeze(-1), 0.0)


class RowSampler:
    """``transformers`` logits processor for rows with their own decoding: row b draws with its own seed
    from ``softmax(scores_b / T_b)`` restricted to its top-p nucleus, or greedily where ``T_b`` is 0.

    The nucleus of row b is the smallest set of most likely tokens whose probability reaches ``top_p_b``
    (ties at the edge kept); with ``top_p_b = 1`` the draw is exactly :class:`RowSeededSampler`'s for the same
    seed and temperature. Put it last and generate with ``do_sample=False``. Used by the server, where
    requests with different settings share one batch.
    """

    def __init__(self, seeds: Sequence[int], temperatures: Sequence[float], top_ps: Sequence[float]):
        if not len(seeds) == len(temperatures) == len(top_ps):
            raise ValueError("one seed, temperature and top_p per row")
        self.seeds = [int(s) for s in seeds]
        self.temperatures = torch.tensor([float(t) for t in temperatures], dtype=torch.float32)
        self.top_ps = torch.tensor([float(p) for p in top_ps], dtype=torch.float32)
        self._generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        device = scores.device
        if self._generators is None:
            self._generators = [torch.Generator(device).manual_seed(s) for s in self.seeds]
        u = torch.cat([torch.rand(1, generator=g, device=device) for g in self._generators])  # (B,)
        temperature = self.temperatures.to(device)
        greedy = temperature <= 0
        probs = torch.softmax(scores.float() / torch.where(greedy, 1.0, temperature)[:, None], dim=-1)
        probs = nucleus(probs, self.top_ps.to(device))
        tokens = torch.where(greedy, scores.argmax(-1), inverse_cdf_sample(probs, u))  # (B,)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, tokens.unsqueeze(-1), 0.0)


def nucleus(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """``probs`` (B, V) with every token outside row b's top-``top_p[b]`` nucleus set to 0 (not renormalised:
    :func:`inverse_cdf_sample` scales by the row's mass). A row with ``top_p >= 1`` is returned unchanged."""
    if bool((top_p >= 1).all()):
        return probs
    sorted_p, _ = probs.sort(-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass of the strictly more likely tokens
    keep_sorted = before < top_p[:, None]
    threshold = torch.where(keep_sorted, sorted_p, torch.inf).min(-1).values  # the least kept probability
    keep = (probs >= threshold[:, None]) | (top_p[:, None] >= 1)
    return probs * keep
