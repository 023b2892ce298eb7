"""MOD: decoding-time fusion of single-objective models (Shi et al., 2024, "Decoding-Time Language Model
Alignment with Multiple Objectives").

At a preference λ the next token of every row is drawn from

    π_λ(y_t | x, y_<t) ∝ exp( Σ_i λ_i log π_i(y_t | x, y_<t) / T )                      (MOD)

over the models π_i with λ_i > 0: one forward pass per such model and token, each model with its own KV
cache. The first of them generates through ``transformers`` (so EOS, padding and the per-row seeded sampler
are those of every other method, :func:`hoe.generation.text.sample_ids`); :class:`Fusion`, a logits
processor, runs the others on the same tokens and replaces the scores by ``Σ_i λ_i log_softmax(z_i)``, which
the sampler then divides by T. With one model (a vertex of the simplex) nothing is fused: ``softmax(log π / T)``
is ``softmax(z / T)``, so the model is sampled exactly as on its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from hoe.generation.text import sample_ids


def mod_scores(logits: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """``Σ_i λ_i log_softmax(z_i)``: next-token logits (B, V) of each model and λ_i -> (B, V) float32."""
    total = torch.zeros_like(logits[0], dtype=torch.float32)
    for w, z in zip(weights, logits):
        total += float(w) * torch.log_softmax(z.float(), dim=-1)
    return total


class Fusion:
    """Logits processor: the generating model's scores (weight ``weight``) fused with ``others`` (λ_i, model),
    each run one token at a time on the same sequence with its own KV cache.

    ``attention_mask`` (B, L) is the left-padded prompt batch's; each step extends it by one column of ones and
    the positions by one, as ``transformers`` does for the generating model.
    """

    def __init__(
        self, weight: float, others: Sequence[tuple[float, torch.nn.Module]], attention_mask: torch.Tensor
    ):
        self.weight, self.others = float(weight), list(others)
        self.mask = attention_mask
        self.positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)  # (B, L)
        self.caches: list | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.caches is None:  # first call: the prompt, the other models' prefill
            assert input_ids.shape == self.mask.shape, (input_ids.shape, self.mask.shape)
            step_ids, positions = input_ids, self.positions
            self.caches = [None] * len(self.others)
        else:  # one new token per row
            ones = self.mask.new_ones(self.mask.shape[0], 1)
            self.mask = torch.cat([self.mask, ones], dim=-1)  # (B, L + t)
            step_ids, positions = input_ids[:, -1:], self.positions[:, -1:] + 1  # (B, 1)
            self.positions = positions
            assert input_ids.shape == self.mask.shape, (input_ids.shape, self.mask.shape)
        logits = [scores]
        for j, (_, model) in enumerate(self.others):
            cache = {_cache_argument(model): self.caches[j]}
            out = model(
                input_ids=step_ids, attention_mask=self.mask, position_ids=positions, use_cache=True, **cache
            )
            self.caches[j] = out["cache"] if "cache" in out else out["past_key_values"]
            logits.append(out.logits[:, -1, :])  # (B, V)
        return mod_scores(logits, [self.weight, *(w for w, _ in self.others)])


def _cache_argument(model: torch.nn.Module) -> str:
    """The forward argument that takes the KV cache: ``cache`` in transformers >= 5.2x, else
    ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def mod_sample_ids(
    models: Sequence[tuple[float, torch.nn.Module]],
    tokenizer,
    batch,
    max_new_tokens: int,
    temperature: float,
    seeds: Sequence[int] | None,
) -> torch.Tensor:
    """New token ids (B, T) sampled from MOD over the ``(λ_i, model_i)`` with λ_i > 0 (see the module)."""
    active = [(float(w), m) for w, m in models if w > 0]
    (weight, first), others = active[0], active[1:]
    processors = [Fusion(weight, others, batch["attention_mask"])] if others else []
    return sample_ids(first, tokenizer, batch, None, max_new_tokens, temperature, seeds, processors)
