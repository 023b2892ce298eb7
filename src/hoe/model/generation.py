"""Text in, text out: batched generation with an HoE model at a preference."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hoe.devices import module_device
from hoe.errors import ConfigError
from hoe.model.hoe_model import HoEModel
from hoe.model.sampling import RowSeededSampler
from hoe.preference import PreferenceLike


def load_tokenizer(ref: str):
    """The tokenizer of a base model reference, padded on the left for generation."""
    from hoe.backbones import load_tokenizer as load

    tokenizer = load(ref, "base")
    tokenizer.padding_side = "left"  # decoder-only: generated tokens must follow the prompt directly
    return tokenizer


def generate_text(
    model: HoEModel | torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    preference: PreferenceLike | Sequence[PreferenceLike] | None,
    chat: bool = False,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    seed: int | Sequence[int] | None = 0,
) -> list[str]:
    """Generate one response per prompt. ``temperature`` 0 decodes greedily; ``chat`` applies the chat template.

    ``model`` is an :class:`HoEModel` (then ``preference`` is required) or any causal LM (``preference=None``).

    Sampling is seeded per row (:mod:`hoe.model.sampling`): ``seed`` is one seed per prompt, or an int ``s``
    that gives prompt i the seed ``s + i``. A prompt's response then depends on its seed, not on its batch.
    ``seed=None`` samples from torch's global generator as it stands.
    """
    seeds = None if seed is None else _row_seeds(seed, len(prompts))
    batch = encode_prompts(tokenizer, prompts, chat).to(module_device(model))
    if temperature <= 0:
        sampling = {"do_sample": False}
    elif seeds is None:
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    else:  # greedy over the one token the sampler leaves finite
        sampling = {"do_sample": False, "logits_processor": [RowSeededSampler(seeds, temperature)]}
    if preference is not None:
        sampling["preference"] = preference
    out = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        **sampling,
    )
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def encode_prompts(tokenizer, prompts: Sequence[str], chat: bool):
    """Left-padded input ids of ``prompts``; with ``chat``, each is one user turn of the tokenizer's chat
    template followed by the generation prompt (the template adds its own special tokens)."""
    if chat:
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        ]
    else:
        texts = list(prompts)
    tokenizer.padding_side = "left"  # decoder-only: generated tokens must follow the prompt directly
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)


def _row_seeds(seed: int | Sequence[int], n: int) -> list[int]:
    if isinstance(seed, int):
        return [seed + i for i in range(n)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise ConfigError(f"seed: {len(seeds)} seeds for {n} prompts; pass one per prompt, or one int.")
    return seeds
