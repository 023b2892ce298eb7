"""The expert recipe's config: every option of ``hoe train-expert``, checked all at once."""

from __future__ import annotations

from dataclasses import dataclass

from hoe.dtypes import DTYPES
from hoe.validation import at_least, non_empty, not_both, one_of, positive, validate

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
RESUMABLE = {"steps", "checkpoint_every", "resume", "overwrite", "micro_batch", "out", "device", "dtype"}
"""Config fields that may differ between a run and its resumption."""


@dataclass
class ExpertConfig:
    """Everything ``train_expert`` needs; field names are the CLI flags (``lora_rank`` -> ``--lora-rank``)."""

    out: str
    base: str = "smollm2-135m-instruct"
    objective: str = "relevance"
    prompts: str = "smol"
    split: str = "train"
    steps: int = 200
    seed: int = 0
    lora_rank: int = 8
    targets: list[str] | None = None
    lr: float = 2e-4
    kl_coef: float = 0.05
    samples_per_prompt: int = 4
    batch_prompts: int = 4
    max_new_tokens: int = 48
    temperature: float = 0.7
    max_grad_norm: float = 1.0
    micro_batch: int = 16
    checkpoint_every: int = 25
    resume: bool = False
    overwrite: bool = False
    device: str = "auto"
    dtype: str = "float32"  # of the saved adapter (training is float32)
    base_dtype: str = "float32"  # the frozen base model is loaded in it (bfloat16 halves its memory)

    def __post_init__(self) -> None:
        validate(self, _CHECKS)


_CHECKS = [
    positive("steps", "number of optimizer steps"),
    positive("lora_rank", "LoRA rank, e.g. 8"),
    positive("lr", "learning rate, e.g. 2e-4"),
    positive("batch_prompts", "number of prompts per step"),
    positive("max_new_tokens", "response length budget, e.g. 48"),
    positive("temperature", "sampling temperature, e.g. 0.7"),
    positive("max_grad_norm", "gradient-norm clip, e.g. 1.0"),
    positive("micro_batch", "number of rows per forward pass"),
    positive("checkpoint_every", "number of steps between checkpoints"),
    at_least("kl_coef", 0, "a KL weight"),
    at_least(
        "samples_per_prompt", 2, "a number of samples per prompt (RLOO's baseline needs another sample)"
    ),
    non_empty("out", "the folder for the trained adapter"),
    one_of("dtype", list(DTYPES)),
    one_of("base_dtype", list(DTYPES)),
    not_both("resume", "overwrite"),
]
