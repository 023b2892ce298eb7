"""``positivity``: VADER compound sentiment of the response, in [-1, 1] (Hutto & Gilbert, 2014).

VADER sums lexicon valences (with rules for negation, intensifiers, punctuation) into ``s`` and normalises
``compound = s / sqrt(s^2 + 15)``. The lexicon ships in the PyPI package ``vaderSentiment``; nothing is
downloaded. The prompt is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from hoe.errors import ConfigError, HoEError
from hoe.objectives.base import ObjectiveContext, register_objective


@lru_cache(maxsize=1)
def analyzer():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise HoEError(
            "the positivity objective needs the package vaderSentiment: pip install vaderSentiment"
        ) from None
    return SentimentIntensityAnalyzer()


@dataclass
class Positivity:
    name: str = "positivity"

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        sia = analyzer()
        return torch.tensor([sia.polarity_scores(r)["compound"] for r in responses], dtype=torch.float32)


@register_objective("positivity")
def positivity(arg: str | None, context: ObjectiveContext) -> Positivity:
    if arg:
        raise ConfigError(
            f"positivity takes no argument, got positivity:{arg}.",
            field="objective",
            value=f"positivity:{arg}",
            fix="Write positivity.",
        )
    return Positivity()
