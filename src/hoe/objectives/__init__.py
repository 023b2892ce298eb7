"""Objectives (all maximised): registry, spec parsing, the ``n x m`` reward matrix, and the built-in kinds.

See :mod:`hoe.objectives.base` for the spec grammar. Each kind lives in its own module and registers
itself on import; heavy dependencies (transformers models, VADER, MiniLM) load lazily on first use.
"""

from hoe.objectives import (  # noqa: F401  (register the built-in kinds)
    brevity,
    judge,
    negated,
    positivity,
    python,
    relevance,
    reward_model,
    score_model,
)
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
