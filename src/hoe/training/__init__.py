"""Training recipes: single-objective LoRA experts by RLOO policy gradient with a KL penalty."""

from hoe.training.expert import ExpertConfig, train_expert

__all__ = ["ExpertConfig", "train_expert"]
