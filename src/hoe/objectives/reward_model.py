"""``hf:MODEL[@INDEX]``: a Hugging Face sequence-classification reward model, e.g.
``hf:Ray2333/gpt2-large-helpful-reward_model`` (a hub id, a local folder or a built-in name).

The score is the model's logit number ``INDEX`` (default 0) for the pair. Input format: if the model's
tokenizer has a chat template, the pair is rendered as a user turn (prompt) then an assistant turn
(response); otherwise as ``"{prompt}\\n\\n{response}"``. A model trained on another format (e.g. the
``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` of HH-RLHF models) should get it through ``template=`` in Python:
``RewardModel("Ray2333/gpt2-large-helpful-reward_model", template="\\n\\nHuman: {prompt}\\n\\nAssistant: {response}")``.
Texts longer than ``max_length`` tokens are cut at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from hoe.errors import CheckpointError, ConfigError
from hoe.io.resolve import resolve_model_dir
from hoe.objectives.base import ObjectiveContext, register_objective

BATCH = 16


@dataclass
class RewardModel:
    """Output ``index`` of ``AutoModelForSequenceClassification`` loaded from ``ref``."""

    ref: str
    index: int = 0
    template: str | None = None
    name: str = ""
    device: str = "cpu"
    max_length: int = 1024
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = resolve_model_dir(self.ref, "objective")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), local_files_only=True
            )
        except (OSError, ValueError) as e:
            raise CheckpointError(
                f"cannot load a sequence-classification model from {str(folder)!r} ({e}).",
                field="objective",
                value=self.ref,
                fix="Pass a folder, hub id or built-in name of a sequence-classification model.",
            ) from None
        n_out = self.model.config.num_labels
        if not 0 <= self.index < n_out:
            raise ConfigError(
                f"hf:{self.ref}@{self.index}: the model has {n_out} output(s).",
                field="objective",
                value=f"hf:{self.ref}@{self.index}",
                fix=f"Pass an index from 0 to {n_out - 1}.",
            )
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"
        self.model.to(self.device).eval()
        self.name = self.name or default_name(self.ref, self.index)

    def render(self, prompt: str, response: str) -> str:
        if self.template is not None:
            return self.template.format(prompt=prompt, response=response)
        if getattr(self.tokenizer, "chat_template", None):
            chat = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            return self.tokenizer.apply_chat_template(chat, tokenize=False)
        return f"{prompt}\n\n{response}"

    @torch.inference_mode()
    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        texts = [self.render(p, r) for p, r in zip(prompts, responses)]
        out = []
        for i in range(0, len(texts), BATCH):
            enc = self.tokenizer(
                texts[i : i + BATCH],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            out.append(self.model(**enc).logits[:, self.index].float().cpu())  # (b,)
        return torch.cat(out) if out else torch.zeros(0)


def default_name(ref: str, index: int) -> str:
    stem = str(ref).rstrip("/").split("/")[-1]
    return stem if index == 0 else f"{stem}@{index}"


def parse_hf_arg(arg: str) -> tuple[str, int]:
    """``"owner/model@2"`` -> ``("owner/model", 2)``; no ``@`` means index 0."""
    ref, sep, idx = arg.rpartition("@")
    if not sep:
        return arg, 0
    try:
        return ref, int(idx)
    except ValueError:
        raise ConfigError(
            f"hf:{arg}: the part after @ must be an output index.",
            field="objective",
            value=f"hf:{arg}",
            fix=f"Write e.g. hf:{ref}@0.",
        ) from None


@register_objective("hf")
def hf_reward_model(arg: str | None, context: ObjectiveContext) -> RewardModel:
    if not arg:
        raise ConfigError(
            "hf needs a model.",
            field="objective",
            value="hf",
            fix="Write hf:MODEL[@INDEX], e.g. hf:Ray2333/gpt2-large-helpful-reward_model.",
        )
    ref, index = parse_hf_arg(arg)
    return RewardModel(ref, index, device=context.device)
