"""``neg:SPEC``: the negation of another objective, so that a cost is maximised like every objective.

``cost=neg:score:PKU-Alignment/beaver-7b-v1.0-cost#beaver`` scores ``-cost(prompt, response)``. The inner
spec is any spec (unnamed: the outer ``NAME=`` names the objective; by default ``neg-<inner name>``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoe.errors import ConfigError
from hoe.objectives.base import (
    Objective,
    ObjectiveContext,
    build_objective,
    check_objective,
    check_spec,
    register_objective,
)


@dataclass
class Negated:
    inner: Objective
    name: str

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        return -torch.as_tensor(self.inner.score(prompts, responses), dtype=torch.float32)


def inner_spec(arg: str | None) -> str:
    if not arg:
        raise ConfigError(
            "neg needs the objective it negates.",
            field="objective",
            value="neg",
            fix="Write neg:SPEC, e.g. cost=neg:hf:MODEL.",
        )
    return arg


check_objective("neg")(lambda arg: check_spec(inner_spec(arg)))


@register_objective("neg")
def negated(arg: str | None, context: ObjectiveContext) -> Negated:
    inner = build_objective(inner_spec(arg), context)
    return Negated(inner, f"neg-{inner.name}")
