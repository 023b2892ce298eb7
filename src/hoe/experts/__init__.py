"""Level 1 of the hierarchy: LoRA experts (task vectors, task-SVD, merging)."""
