"""``judge:MODEL:QUESTION``: a causal LM asked a yes/no QUESTION about each pair (an "LM judge").

The judge reads ``QUESTION``, the prompt and the response (as a user turn of its chat template when it has
one), and the score is the log-odds of its next token

    s = log Σ_{t ∈ YES} p(t | x) - log Σ_{t ∈ NO} p(t | x),

with YES / NO the first tokens of the spellings ``yes``/``Yes`` and ``no``/``No`` (with a leading space
too when there is no chat template). Any causal LM works; SmolLM2 itself gives, e.g.,
``funny=judge:smollm2-135m-instruct:Is this response funny?``. ``MODEL`` (a folder, hub id or built-in
name) ends at the first ``:``; the question is the rest of the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from hoe.errors import ConfigError
from hoe.objectives.base import ObjectiveContext, check_objective, register_objective

BATCH = 16
TEMPLATE = "{question}\n\nMessage: {prompt}\nResponse: {response}\n\nAnswer with yes or no."


@dataclass
class Judge:
    """A yes/no judge: ``log p(yes) - log p(no)`` from the causal LM ``ref``."""

    ref: str
    question: str
    name: str = "judge"
    yes: tuple[str, ...] = ("yes", "Yes")
    no: tuple[str, ...] = ("no", "No")
    device: str = "cpu"
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from hoe.backbones import load_causal_lm

        self.model, self.tokenizer = load_causal_lm(self.ref, field="objective")
        self.model.to(self.device)
        self.tokenizer.padding_side = "left"
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self.yes_ids = self.first_tokens(self.yes)
        self.no_ids = self.first_tokens(self.no)
        if set(self.yes_ids) & set(self.no_ids):
            raise ConfigError(
                f"judge: the tokenizer of {self.ref!r} starts 'yes' and 'no' with the same token.",
                field="objective",
                value=self.ref,
                fix="Use another judge model.",
            )

    def first_tokens(self, words: tuple[str, ...]) -> list[int]:
        spellings = list(words) if self.chat else [f" {w}" for w in words] + list(words)
        ids = {self.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in spellings}
        return sorted(ids)

    def render(self, prompt: str, response: str) -> str:
        text = TEMPLATE.format(question=self.question, prompt=prompt, response=response)
        if self.chat:
            chat = [{"role": "user", "content": text}]
            return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return text + "\nAnswer:"

    @torch.inference_mode()
    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        texts = [self.render(p, r) for p, r in zip(prompts, responses)]
        out = [self.log_odds(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
        return torch.cat(out) if out else torch.zeros(0)

    def log_odds(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(texts, padding=True, add_special_tokens=not self.chat, return_tensors="pt").to(
            self.device
        )
        positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # (b, T): left padding
        logits = self.model(**enc, position_ids=positions, logits_to_keep=1).logits[:, -1].float()  # (b, V)
        logp = torch.log_softmax(logits, dim=-1)
        return (logp[:, self.yes_ids].logsumexp(-1) - logp[:, self.no_ids].logsumexp(-1)).cpu()  # (b,)


@check_objective("judge")
def parse_judge_arg(arg: str | None) -> tuple[str, str]:
    """``judge:MODEL:QUESTION``'s (model, question); raises :class:`ConfigError` when either is missing."""
    ref, sep, question = (arg or "").partition(":")
    if not ref or not sep or not question.strip():
        raise ConfigError(
            f"judge:{arg or ''} lacks a model or a question.",
            field="objective",
            value=f"judge:{arg or ''}",
            fix="Write judge:MODEL:QUESTION, e.g. judge:smollm2-135m-instruct:Is this response funny?",
        )
    return ref, question.strip()


@register_objective("judge")
def judge(arg: str | None, context: ObjectiveContext) -> Judge:
    ref, question = parse_judge_arg(arg)
    return Judge(ref, question, device=context.device)
