"""Objectives (all maximised): registry, spec parsing, the ``n x m`` reward matrix, and the built-in kinds.

See :mod:`hoe.objectives.base` for the spec grammar. Each kind lives in its own module and registers
itself on import; heavy dependencies (transformers models, VADER, MiniLM) load lazily on first use.
"""

from hoe.objectives import brevity, judge, positivity, python, relevance, reward_model  # noqa: F401  (register)
from hoe.objectives.base import (
    OBJECTIVES,
    Objective,
    ObjectiveContext,
    build_objective,
    build_objectives,
    register_objective,
    score_matrix,
)

__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveContext",
    "build_objective",
    "build_objectives",
    "register_objective",
    "score_matrix",
]
