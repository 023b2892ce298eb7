"""Levels 2 and 3 of the hierarchy and the model that hosts them: HoE layers, router experts, preference routing."""
