"""The expert recipe: a single-objective LoRA expert by RLOO with a KL penalty (``hoe train-expert``).

:mod:`~hoe.training.expert.config` holds its options, :mod:`~hoe.training.expert.recipe` its phases on the
shared loop, :mod:`~hoe.training.expert.card` what it writes.
"""

from hoe.training.expert.config import ExpertConfig
from hoe.training.expert.recipe import ExpertRecipe, train_expert

__all__ = ["ExpertConfig", "ExpertRecipe", "train_expert"]
