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

Adding one is a small module here registered with :func:`register_scalarisation` (from
:mod:`hoe.scalarisation.base`, which holds the contract and the registry) and imported below. Objectives
are maximised.
"""

from hoe.scalarisation import hypervolume, improvement, linear, tchebycheff  # noqa: F401  (registers them)
from hoe.scalarisation.base import SCALARISATIONS, Scalarisation, build_scalarisation, register_scalarisation

__all__ = ["SCALARISATIONS", "Scalarisation", "build_scalarisation", "register_scalarisation"]
