"""``hf:MODEL[@INDEX][#TEMPLATE]``: a Hugging Face sequence-classification reward model, e.g.
``hf:Ray2333/gpt2-large-helpful-reward_model#hh`` (a hub id, a local folder or a built-in name).

The score is the model's logit number ``INDEX`` (default 0) for the pair. Input format: the registered
template ``TEMPLATE`` (:data:`TEMPLATES`: ``hh`` for the ``"\n\nHuman: ...\n\nAssistant: ..."`` of HH-RLHF
models, ``pair`` and ``pair-reversed`` for a tokenizer text pair, ``response``, ``plain``...); without one, if
the model's tokenizer has a chat template, the pair is rendered as a user turn (prompt) then an assistant turn
(response), otherwise as ``"{prompt}\n\n{response}"``. Any other format goes through ``template=`` in
Python: ``RewardModel(ref, template="Q: {prompt}\nA: {response}")``. Texts longer than ``max_length`` tokens
are cut at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hoe.errors import CheckpointError, ConfigError
from hoe.io.resolve import resolve_model_dir
from hoe.objectives.base import ObjectiveContext, check_objective, register_objective
from hoe.registry import Registry

BATCH = 16

Rendered = str | tuple[str, str]  # one text, or a (text, text_pair) the tokenizer joins with its separator
Template = Callable[[str, str], Rendered]
TEMPLATES: Registry[Template] = Registry("template")
"""Input formats of reward models, by name (``hf:MODEL#NAME``): ``(prompt, response) -> text or text pair``.
The paper's set-ups (:mod:`hoe.setups`) give the policy prompts already in the RiC formats (``"\n\nHuman: …
\n\nAssistant:"``, ``"### Instruction: … ### Input: POST ### Response: "``), so their reward models mostly
read the pair as it is; ``hh`` wraps a bare question in the HH-RLHF format instead."""


def _post(prompt: str) -> str:
    """The post of a RiC summary prompt (between ``### Input:`` and ``### Response:``), else the prompt."""
    head, sep, rest = prompt.partition("### Input:")
    return rest.partition("### Response:")[0].strip() if sep else prompt.strip()


def _beaver(prompt: str, response: str) -> str:
    """safe-rlhf's conversation format, from an HH-formatted pair (as the authors' code converts it)."""
    text = " ASSISTANT:".join((prompt + response).split("\n\nAssistant:"))
    return "BEGINNING OF CONVERSATION:" + " USER:".join(text.split("\n\nHuman:"))


TEMPLATES.update(
    {
        "plain": lambda p, r: f"{p}\n\n{r}",
        "concat": lambda p, r: p + r,
        "response": lambda p, r: r,  # the response alone (a text classifier, e.g. the humour model)
        "pair": lambda p, r: (p, r),  # tokenizer(prompt, response): the Ray2333 HH and OpenAssistant RMs
        "pair-reversed": lambda p, r: (r, p),
        "hh": lambda p, r: f"\n\nHuman: {p}\n\nAssistant: {r}",  # a bare question in HH-RLHF's format
        "beaver": _beaver,  # safe-rlhf score models, from an HH-formatted prompt
        "summary-post": lambda p, r: (r, _post(p)),  # (summary, post): CogComp's faithfulness detector
        "gpt2-summary": lambda p, r: f"{r} <|endoftext|> {_post(p)}",  # Tristan/gpt2_reward_summarization
    }
)


@dataclass
class RewardModel:
    """Output ``index`` of ``AutoModelForSequenceClassification`` loaded from ``ref``."""

    ref: str
    index: int = 0
    template: str | Template | None = None  # a format string with {prompt} and {response}, or a function
    name: str = ""
    device: str = "cpu"
    max_length: int = 1024
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)

    kind = "hf"
    what = "sequence-classification model"

    def __post_init__(self) -> None:
        from transformers import AutoTokenizer

        folder = resolve_model_dir(self.ref, "objective")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = self.load(folder)
        except (OSError, ValueError) as e:
            raise CheckpointError(
                f"cannot load a {self.what} from {str(folder)!r} ({e}).",
                field="objective",
                value=self.ref,
                fix=f"Pass a folder, hub id or built-in name of a {self.what}.",
            ) from None
        n_out = self.num_outputs()
        if not 0 <= self.index < n_out:
            raise ConfigError(
                f"{self.kind}:{self.ref}@{self.index}: the model has {n_out} output(s).",
                field="objective",
                value=f"{self.kind}:{self.ref}@{self.index}",
                fix=f"Pass an index from 0 to {n_out - 1}.",
            )
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"
        self.model.to(self.device).eval()
        self.name = self.name or default_name(self.ref, self.index)

    def load(self, folder: Path) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True)

    def num_outputs(self) -> int:
        return self.model.config.num_labels

    def outputs(self, enc: Any) -> torch.Tensor:
        """(b, outputs) scores of a right-padded tokenised batch."""
        return self.model(**enc).logits

    def render(self, prompt: str, response: str) -> Rendered:
        if callable(self.template):
            return self.template(prompt, response)
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
            chunk = texts[i : i + BATCH]
            pairs = isinstance(chunk[0], tuple)
            enc = self.tokenizer(
                [t[0] for t in chunk] if pairs else chunk,
                [t[1] for t in chunk] if pairs else None,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            out.append(self.outputs(enc)[:, self.index].float().cpu())  # (b,)
        return torch.cat(out) if out else torch.zeros(0)


def default_name(ref: str, index: int) -> str:
    stem = str(ref).rstrip("/").split("/")[-1]
    return stem if index == 0 else f"{stem}@{index}"


def parse_hf_arg(arg: str, kind: str = "hf") -> tuple[str, int, str | None]:
    """``"owner/model@2#hh"`` -> ``("owner/model", 2, "hh")``; no ``@`` means index 0, no ``#`` no template.
    ``kind`` is the spec's (``hf``, ``score``), for the error messages."""
    body, sep, template = arg.rpartition("#")
    if not sep:
        body, template = arg, None
    elif template not in TEMPLATES:
        raise ConfigError(
            f"{kind}:{arg}: unknown template {template!r}.",
            field="objective",
            value=f"{kind}:{arg}",
            fix=f"Templates: {', '.join(sorted(TEMPLATES))}.",
        )
    ref, sep, idx = body.rpartition("@")
    if not sep:
        return body, 0, template
    try:
        return ref, int(idx), template
    except ValueError:
        raise ConfigError(
            f"{kind}:{arg}: the part after @ must be an output index.",
            field="objective",
            value=f"{kind}:{arg}",
            fix=f"Write e.g. {kind}:{ref}@0.",
        ) from None


@check_objective("hf")
def parse_hf_spec(
    arg: str | None, kind: str = "hf", example: str = "Ray2333/gpt2-large-helpful-reward_model#hh"
):
    """``KIND:MODEL[@INDEX][#TEMPLATE]``'s (model, index, template name); raises :class:`ConfigError`."""
    if not arg:
        raise ConfigError(
            f"{kind} needs a model.",
            field="objective",
            value=kind,
            fix=f"Write {kind}:MODEL[@INDEX][#TEMPLATE], e.g. {kind}:{example}.",
        )
    return parse_hf_arg(arg, kind)


@register_objective("hf")
def hf_reward_model(arg: str | None, context: ObjectiveContext) -> RewardModel:
    ref, index, template = parse_hf_spec(arg)
    return RewardModel(ref, index, TEMPLATES.get(template) if template else None, device=context.device)
