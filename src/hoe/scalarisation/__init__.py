"""Scalarisations: how a router expert turns m objectives into one training signal (METHOD.md §2(b).2).

A scalarisation is bound to a preference λ (on the simplex) and gives

* ``utility(rewards) -> (n,)``: the scalar it maximises, from an ``n x m`` reward matrix (for logging and
  evaluation), and
* ``weights``: the ``(m,)`` mixture ``w`` of the per-objective advantages in the policy gradient
  ``Σ_i w_i A_i`` (Eq. 8), with ``initial_weights()`` and ``update_weights(w, mean_reward)`` after each batch
  (fixed for ``linear``; online mirror descent for ``tchebycheff``, ``hypervolume`` and ``improvement``).

The factory's keyword arguments name what it needs, and the router recipe offers exactly those
(:func:`hoe.training.router.scalarisation_options`): ``z_star`` (the ideal point, measured on the experts),
``ref_point`` (the evaluation's hypervolume reference point), ``baseline`` (HoE without routers at the anchor,
measured), ``alpha`` and ``step_size`` (OMD).

Adding one is a small module here registered with :func:`register_scalarisation`. Objectives are maximised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from hoe.registry import Registry


class Scalarisation(Protocol):
    lam: torch.Tensor  # (m,) the preference, on the simplex

    def utility(self, rewards: torch.Tensor) -> torch.Tensor:
        """(n, m) -> (n,), larger is better."""
        ...

    def initial_weights(self) -> torch.Tensor:
        """(m,) on the simplex."""
        ...

    def update_weights(self, w: torch.Tensor, mean_reward: torch.Tensor) -> torch.Tensor:
        """(m,), (m,) batch-mean rewards -> the next (m,) weights."""
        ...


Factory = Callable[..., Scalarisation]
SCALARISATIONS: Registry[Factory] = Registry("scalarisation")
register_scalarisation = SCALARISATIONS.register


def build_scalarisation(name: str, lam: torch.Tensor, **options) -> Scalarisation:
    """``SCALARISATIONS[name](lam, **options)``; an unknown name lists the registered ones."""
    return SCALARISATIONS.lookup(name)(lam, **options)


from hoe.scalarisation import hypervolume, improvement, linear, tchebycheff  # noqa: E402,F401  (registers them)
