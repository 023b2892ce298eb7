"""Sampling with one seed per row, so a prompt's sample does not depend on what else is in its batch.

``transformers`` samples a whole batch from torch's global generator: the tokens of row i then depend on the
other rows and on the batch size. Evaluations need a fixed seed per prompt (BENCH.md §1) and comparisons of two
models on the same prompt are sharper with *common random numbers*. :class:`RowSampler` does both: each
row owns a ``torch.Generator`` and draws its next token by inverse-CDF sampling from one uniform number, so two
models given the same seed use the same uniforms and pick the same token wherever their distributions agree.

It is a ``LogitsProcessor`` that leaves only the drawn token finite; ``generate`` then runs greedily
(``do_sample=False``) and picks it. No ``transformers`` API takes per-row generators, hence this class.
"""

from __future__ import annotations

import math
import numbers
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


class RowSampler:
    """``transformers`` logits processor: row b draws its next token with its own seed b from
    ``softmax(scores_b / T_b)`` restricted to its top-p nucleus, or greedily where ``T_b`` is 0.

    ``temperature`` and ``top_p`` are one value for every row or one per row. One temperature is a sampling
    temperature (> 0: greedy decoding of every row needs no sampler); per row, 0 marks a greedy row, so that
    the server decodes requests with different settings in one batch. The nucleus of row b is the smallest set
    of most likely tokens whose probability reaches ``top_p_b`` (ties at the edge kept); at ``top_p_b = 1``
    it is every token. Put it last in the processor list and generate with ``do_sample=False``.
    """

    def __init__(
        self, seeds: Sequence[int], temperature: float | Sequence[float], top_p: float | Sequence[float] = 1.0
    ):
        self.seeds = [int(s) for s in seeds]
        if isinstance(temperature, numbers.Real):
            if not (math.isfinite(temperature) and temperature > 0):
                raise bad_value("temperature", temperature, "Sampling needs a finite temperature > 0.")
            self.temperature: float | torch.Tensor = float(temperature)
        else:
            self.temperature = self._per_row(temperature)
        top_ps = [float(top_p)] * len(self.seeds) if isinstance(top_p, numbers.Real) else self._per_row(top_p)
        # None: every row keeps every token, and the nucleus (a host sync per step) is skipped
        self.top_p = None if all(p >= 1 for p in top_ps) else torch.as_tensor(top_ps, dtype=torch.float32)
        self._generators: list[torch.Generator] | None = None

    def _per_row(self, values: Sequence[float]) -> torch.Tensor:
        if len(values) != len(self.seeds):
            raise ValueError("one seed, temperature and top_p per row")
        return torch.tensor([float(v) for v in values], dtype=torch.float32)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.seeds):
            raise ConfigError(
                f"{len(self.seeds)} seeds for {scores.shape[0]} rows.",
                field="seed",
                value=self.seeds,
                fix="Pass one seed per generated row (num_return_sequences and beams multiply the rows).",
            )
        device = scores.device
        if self._generators is None:  # made on first use, on the device the scores live on
            self._generators = [torch.Generator(device).manual_seed(s) for s in self.seeds]
        u = torch.cat([torch.rand(1, generator=g, device=device) for g in self._generators])  # (B,)
        if isinstance(self.temperature, float):
            # divided by the Python float, not a tensor of it: CUDA applies a scalar divisor as a multiply by
            # its reciprocal, which may round differently, and committed results were sampled this way
            greedy = None
            probs = torch.softmax(scores.float() / self.temperature, dim=-1)  # (B, V)
        else:
            temperature = self.temperature.to(device)
            greedy = temperature <= 0  # (B,)
            probs = torch.softmax(scores.float() / torch.where(greedy, 1.0, temperature)[:, None], dim=-1)
        if self.top_p is not None:
            probs = nucleus(probs, self.top_p.to(device))
        tokens = inverse_cdf_sample(probs, u)  # (B,)
        if greedy is not None:
            tokens = torch.where(greedy, scores.argmax(-1), tokens)
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
