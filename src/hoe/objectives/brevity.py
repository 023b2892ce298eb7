"""``brevity[:MAX_NEW_TOKENS]``: ``1 - tokens(response) / MAX_NEW_TOKENS``, clipped to [0, 1].

An empty response scores 1 and a response that used the whole decoding budget scores 0. Tokens are counted
with the policy's tokenizer when one is given (without special tokens; re-tokenising decoded text can
differ from the sampled tokens by a token or so), otherwise with :func:`count_words`: every run of word
characters and every other non-space character counts one (``"Hi, you!"`` -> 4).
``MAX_NEW_TOKENS`` defaults to the decoding budget of the run (48 in the smol3 benchmark).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from hoe.errors import ConfigError
from hoe.objectives.base import ObjectiveContext, check_objective, register_objective

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_words(text: str) -> int:
    """Tokenizer-free token count: word runs plus punctuation marks."""
    return len(_TOKEN.findall(text))


@dataclass
class Brevity:
    name: str = "brevity"
    max_new_tokens: int = 48
    tokenizer: Any = None

    def count(self, text: str) -> int:
        if self.tokenizer is None:
            return count_words(text)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        counts = torch.tensor([self.count(r) for r in responses], dtype=torch.float32)
        return (1.0 - counts / self.max_new_tokens).clamp(0.0, 1.0)


def parse_budget(arg: str | None) -> int | None:
    """``brevity:N``'s N (None without one); anything but an integer >= 1 raises :class:`ConfigError`."""
    if arg is None:
        return None
    try:
        budget = int(arg)
    except ValueError:
        budget = 0
    if budget < 1:
        raise ConfigError(
            f"brevity:{arg} is not a token budget.",
            field="objective",
            value=f"brevity:{arg}",
            fix="Write brevity:N with N >= 1 tokens, e.g. brevity:48.",
        )
    return budget


check_objective("brevity")(parse_budget)


@register_objective("brevity")
def brevity(arg: str | None, context: ObjectiveContext) -> Brevity:
    budget = parse_budget(arg)
    return Brevity(
        max_new_tokens=context.max_new_tokens if budget is None else budget, tokenizer=context.tokenizer
    )
