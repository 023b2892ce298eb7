"""Objectives: what an expert or a router is aligned to (all maximised, see :mod:`hoe.conventions`).

An objective scores a batch of ``(prompt, response)`` pairs, one float per pair, larger is better. Several
objectives together give the ``n x m`` reward matrix ``R[i, j] = objective_j(prompt_i, response_i)``.

Objectives are built from a *spec* string ``KIND[:ARG]``, optionally named: ``NAME=KIND[:ARG]``:

==================================  =======================================================================
``relevance``                       cosine of all-MiniLM-L6-v2 embeddings of prompt and response
``positivity``                      VADER compound sentiment of the response, in [-1, 1]
``brevity[:MAX_NEW_TOKENS]``        ``1 - tokens(response) / MAX_NEW_TOKENS`` clipped to [0, 1]
``hf:MODEL[@INDEX][#TEMPLATE]``     output INDEX (default 0) of a sequence-classification reward model
``score:MODEL[@INDEX][#TEMPLATE]``  output INDEX of a safe-rlhf score model at the last token (BeaverTails)
``neg:SPEC``                        minus another objective (a cost, maximised)
``judge:MODEL:QUESTION``            ``log p(yes) - log p(no)`` of a causal LM asked QUESTION about the pair
``py:package.module:function``      any function ``(prompts, responses) -> n floats``
==================================  =======================================================================

``TEMPLATE`` names a reward model's input format (:data:`hoe.objectives.reward_model.TEMPLATES`).
Adding a kind is one small file with a factory decorated by :func:`register_objective`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from hoe.errors import ConfigError
from hoe.registry import Registry

DEFAULT_MAX_NEW_TOKENS = 48


@runtime_checkable
class Objective(Protocol):
    """Something that scores ``(prompt, response)`` pairs; larger is better."""

    name: str

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """Return a float tensor of shape ``(n,)`` for ``n`` pairs."""
        ...


@dataclass(frozen=True)
class ObjectiveContext:
    """What a factory may use besides its spec argument.

    ``tokenizer``: the policy's tokenizer (``brevity`` counts tokens with it); ``max_new_tokens``: the
    decoding budget (``brevity``'s default denominator); ``device``: where neural scorers run.
    """

    tokenizer: Any = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    device: str = "cpu"


Factory = Callable[[str | None, ObjectiveContext], Objective]
OBJECTIVES: Registry[Factory] = Registry("objective")
"""Objective kinds -> factory ``(arg or None, context) -> Objective``."""
register_objective = OBJECTIVES.register
"""Decorator registering a factory under ``kind`` (the part of a spec before the first ``:``)."""

SpecCheck = Callable[[str | None], None]
SPEC_CHECKS: Registry[SpecCheck] = Registry("objective")
"""Objective kinds -> a check of the spec argument that loads nothing (raises :class:`ConfigError`), for
:func:`check_spec`; a kind without one is checked for being registered only."""
check_objective = SPEC_CHECKS.register

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _kind_of(spec: str, field: str) -> tuple[str | None, str, str | None]:
    """``[NAME=]KIND[:ARG]`` -> (name, kind, arg or None); an unregistered kind raises :class:`ConfigError`."""
    name, body = split_name(spec)
    kind, sep, arg = body.partition(":")
    if kind not in OBJECTIVES:
        raise ConfigError(
            f"unknown objective {kind!r} (from {spec!r}).",
            field=field,
            value=spec,
            fix=f"Registered: {', '.join(sorted(OBJECTIVES))}; "
            "or write hf:MODEL[@INDEX][#TEMPLATE], neg:SPEC, judge:MODEL:QUESTION or py:package.module:function.",
        )
    return name, kind, arg if sep else None


def check_spec(spec: str, field: str = "objective") -> None:
    """Check that ``spec`` resolves without building it (no model is loaded or downloaded): its kind is
    registered and its argument parses (a ``py:`` function is imported); raises :class:`ConfigError`."""
    _, kind, arg = _kind_of(spec, field)
    if kind in SPEC_CHECKS:
        SPEC_CHECKS[kind](arg)


def build_objective(
    spec: str, context: ObjectiveContext | None = None, field: str = "objective"
) -> Objective:
    """Build one objective from ``[NAME=]KIND[:ARG]``; unknown kinds raise :class:`ConfigError`."""
    name, kind, arg = _kind_of(spec, field)
    objective = OBJECTIVES[kind](arg, context or ObjectiveContext())
    if name is not None:
        objective.name = name
    return objective


def build_objectives(
    specs: Sequence[str], context: ObjectiveContext | None = None, field: str = "objective"
) -> list[Objective]:
    """Build several objectives; their names must be unique (give ``NAME=`` to disambiguate)."""
    objectives = [build_objective(s, context, field) for s in specs]
    names = [o.name for o in objectives]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(
            f"objective name(s) {twice} given twice.",
            field=field,
            value=list(specs),
            fix="Prefix a spec with NAME= to rename it.",
        )
    return objectives


def split_name(spec: str) -> tuple[str | None, str]:
    """``"helpful=hf:x"`` -> ``("helpful", "hf:x")``; ``"relevance"`` -> ``(None, "relevance")``.

    Only a prefix that is a plain name counts, so ``=`` inside a judge question is left alone.
    """
    head, sep, rest = spec.partition("=")
    if sep and _NAME.match(head.strip()) and rest.strip():
        return head.strip(), rest.strip()
    return None, spec.strip()


def specs_for(names: Sequence[str], given: Sequence[str] | None, field: str = "objective") -> list[str]:
    """One spec per objective of ``names`` (a bundle's), in that order: ``given``, each named like one of them
    by ``NAME=`` or else by its kind, or, with none given, the names themselves as built-in kinds.

    A spec is matched by its text, before anything is built (which may load a model), so a kind with an
    argument needs ``NAME=``: ``py:mod:relevance`` is named ``py`` here even though the objective it builds is
    named ``relevance``.
    """
    specs = list(given or names)
    named = [split_name(s)[0] or split_name(s)[1].partition(":")[0] for s in specs]
    if sorted(named) != sorted(names):
        unnamed = [s for s in specs if split_name(s)[0] is None and ":" in s]
        missing = [n for n in names if n not in named] or list(names)
        hint = f" Name {unnamed} with NAME=, e.g. {missing[0]}={unnamed[0]}." if unnamed else ""
        raise ConfigError(
            f"names the objectives {named}, but the bundle's are {list(names)}.",
            field=field,
            value=specs,
            fix="Give one objective per bundle objective, named like it (NAME=KIND[:ARG])." + hint,
        )
    by_name = dict(zip(named, specs))
    return [by_name[n] for n in names]


def score_matrix(objectives: Sequence[Objective], prompts: list[str], responses: list[str]) -> torch.Tensor:
    """The ``n x m`` reward matrix ``R[i, j] = objectives[j].score(prompts, responses)[i]`` (float32).

    Raises :class:`ConfigError` when an objective returns the wrong shape or a NaN/Inf.
    """
    if len(prompts) != len(responses):
        raise ConfigError(
            f"got {len(prompts)} prompts but {len(responses)} responses.",
            field="responses",
            value=len(responses),
            fix="Pass one response per prompt.",
        )
    n = len(prompts)
    columns = [check_scores(o.name, o.score(prompts, responses), n) for o in objectives]
    if not columns:
        return torch.zeros(n, 0)
    return torch.stack(columns, dim=1)  # (n, m)


def check_scores(name: str, scores: Any, n: int) -> torch.Tensor:
    t = torch.as_tensor(scores, dtype=torch.float32).detach().cpu()
    if t.shape != (n,):
        raise ConfigError(
            f"objective {name!r} returned shape {tuple(t.shape)} for {n} pairs.",
            field="objective",
            value=tuple(t.shape),
            fix=f"It must return {n} floats, one per pair.",
        )
    if not torch.isfinite(t).all():
        raise ConfigError(
            f"objective {name!r} returned NaN or Inf.",
            field="objective",
            fix="Scores must be finite numbers.",
        )
    return t
