"""Training recipes on one loop (:mod:`hoe.training.loop`): single-objective LoRA experts by RLOO with a KL
penalty (:mod:`hoe.training.expert`) and router experts by multi-objective PPO with Tchebycheff scalarisation
and online mirror descent (:mod:`hoe.training.router`). Each recipe is a package of its config, its recipe
class (setup, the phases of a step, save) and its card; :mod:`hoe.training.record` holds what both write."""

from hoe.training.expert import ExpertConfig, train_expert
from hoe.training.router import RouterConfig, train_router

__all__ = ["ExpertConfig", "RouterConfig", "train_expert", "train_router"]
