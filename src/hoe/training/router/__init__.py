"""The router recipe: a router expert at an anchor by multi-objective PPO (``hoe train-router``).

:mod:`~hoe.training.router.config` holds its options, :mod:`~hoe.training.router.checks` what is checked
against the bundle before it loads, :mod:`~hoe.training.router.setup` the parts a run is built from,
:mod:`~hoe.training.router.recipe` its phases on the shared loop, :mod:`~hoe.training.router.card` what it
writes. Not to be confused with :mod:`hoe.model.router`, the router *layer* that this recipe trains.
"""

from hoe.training.router.config import RouterConfig, default_router_name, scalarisation_options
from hoe.training.router.recipe import RouterRecipe, train_router

__all__ = ["RouterConfig", "RouterRecipe", "default_router_name", "scalarisation_options", "train_router"]
