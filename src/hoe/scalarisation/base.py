"""The scalarisation contract and registry (:mod:`hoe.scalarisation` explains both); built-ins import it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from hoe.registry import Registry


class Scalarisation(Protocol):
    """A scalarisation bound to a preference λ: its utility and its OMD weights (see :mod:`hoe.scalarisation`)."""

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
