"""Sampling responses from a causal LM and scoring their tokens (the rollout phase of RL).

Prompts are rendered with the tokenizer's chat template (one user turn plus the generation prompt); a
tokenizer without a template gets ``prompt + "\\n"``. Sampling is pure temperature sampling (no top-k /
top-p) from the left-padded batch: :func:`sample` draws ``K`` responses per prompt from torch's generator
seeded once (the expert recipe); :func:`sample_rows` gives every row its own seed
(:class:`~hoe.generation.sampling.RowSampler`), so a row's response does not depend on the other rows of its
batch, nor on which process generates it (the router recipe).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoe.devices import module_device
from hoe.generation.text import encode_prompts
from hoe.training.rl import response_mask, token_logprobs


@dataclass
class Rollout:
    """``n = B * K`` sampled responses, rows prompt-major (the K samples of a prompt are adjacent)."""

    prompt_ids: torch.Tensor  # (n, P) left-padded prompt tokens
    prompt_mask: torch.Tensor  # (n, P)
    response_ids: torch.Tensor  # (n, T) generated tokens, padded after the end of each response
    response_mask: torch.Tensor  # (n, T) 1 up to and including the first EOS
    prompts: list[str]  # (n,) the raw prompt of each row
    responses: list[str]  # (n,) decoded responses, special tokens removed

    @property
    def n(self) -> int:
        return self.response_ids.shape[0]

    def rows(self, start: int, stop: int) -> Rollout:
        return Rollout(
            self.prompt_ids[start:stop],
            self.prompt_mask[start:stop],
            self.response_ids[start:stop],
            self.response_mask[start:stop],
            self.prompts[start:stop],
            self.responses[start:stop],
        )

    def select(self, index: torch.Tensor) -> Rollout:
        """The rows ``index`` (a 1-D long tensor), in that order."""
        i = index.tolist()
        return Rollout(
            self.prompt_ids[index],
            self.prompt_mask[index],
            self.response_ids[index],
            self.response_mask[index],
            [self.prompts[k] for k in i],
            [self.responses[k] for k in i],
        )


def eos_ids(model, tokenizer) -> list[int]:
    """Every id that ends a response: the tokenizer's EOS and the model's generation-config EOS ids."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured) if isinstance(configured, list) else {configured}
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def sample(
    model, tokenizer, prompts: list[str], k: int, max_new_tokens: int, temperature: float, seed: int
) -> Rollout:
    """Generate ``k`` responses per prompt, seeded by ``seed`` (the global torch RNG is reset to it)."""
    from transformers import GenerationConfig

    rows = [p for p in prompts for _ in range(k)]  # prompt-major
    chat = bool(getattr(tokenizer, "chat_template", None))
    texts = rows if chat else [p + "\n" for p in rows]  # without a template, a newline ends the prompt
    enc = encode_prompts(tokenizer, texts, chat).to(module_device(model))
    eos = eos_ids(model, tokenizer)
    config = GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos,
    )
    torch.manual_seed(seed)
    out = model.generate(**enc, generation_config=config)  # (n, P + T)
    generated = out[:, enc["input_ids"].shape[1] :]  # (n, T)
    mask = response_mask(generated, eos)
    texts = [
        tokenizer.decode(g[: int(m.sum())], skip_special_tokens=True).strip() for g, m in zip(generated, mask)
    ]
    return Rollout(enc["input_ids"], enc["attention_mask"], generated, mask, rows, texts)


@torch.no_grad()
def sample_rows(
    model, tokenizer, prompts: list[str], seeds: list[int], max_new_tokens: int, temperature: float, **route
) -> Rollout:
    """One response per prompt, row ``i`` sampled with its own seed ``seeds[i]`` at ``temperature`` > 0.

    ``route``: how an :class:`~hoe.model.hoe_model.HoEModel` mixes its experts for the call (``preference=`` or
    ``expert_weights=``). The model's own generation defaults (top-k, repetition penalty...) are not used, so
    the tokens follow exactly ``softmax(logits / temperature)``, the distribution whose log-probabilities
    :func:`response_logprobs` computes.
    """
    from transformers import GenerationConfig, LogitsProcessorList

    from hoe.generation.sampling import RowSampler

    lm = getattr(model, "base_model", model)  # an HoEModel's generation config is its base model's
    chat = bool(getattr(tokenizer, "chat_template", None))
    texts = prompts if chat else [p + "\n" for p in prompts]
    enc = encode_prompts(tokenizer, texts, chat).to(module_device(model))
    eos = eos_ids(lm, tokenizer)
    config = GenerationConfig(
        do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos
    )
    sampler = LogitsProcessorList([RowSampler(seeds, temperature)])
    out = model.generate(**enc, generation_config=config, logits_processor=sampler, **route)  # (n, P + T)
    generated = out[:, enc["input_ids"].shape[1] :]  # (n, T)
    mask = response_mask(generated, eos)
    texts = [
        tokenizer.decode(g[: int(m.sum())], skip_special_tokens=True).strip() for g, m in zip(generated, mask)
    ]
    return Rollout(enc["input_ids"], enc["attention_mask"], generated, mask, list(prompts), texts)


def response_logprobs(model, rollout: Rollout, temperature: float) -> torch.Tensor:
    """``log π(y_t | x, y_<t)`` of each generated token, (n, T), with gradients if enabled.

    Positions follow the attention mask (left padding), as during generation.
    """
    ids = torch.cat([rollout.prompt_ids, rollout.response_ids], dim=1)  # (n, P + T)
    mask = torch.cat([rollout.prompt_mask, rollout.response_mask.long()], dim=1)  # (n, P + T)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    t = rollout.response_ids.shape[1]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=t + 1).logits
    return token_logprobs(logits[:, :-1], rollout.response_ids, temperature)  # (n, T)
