"""``score:MODEL[@INDEX][#TEMPLATE]``: a safe-rlhf score model (``AutoModelForScore``), e.g. the BeaverTails
reward and cost models ``score:PKU-Alignment/beaver-7b-v1.0-reward#beaver``.

Such a checkpoint is a transformers backbone (``model.*``) plus a linear ``score_head`` (score_dim outputs),
saved in safetensors; its architecture (``LlamaModelForScore``) is not a transformers class, so the backbone is
loaded with ``AutoModel`` and the head read from the safetensors files. The score is the head's output
``INDEX`` at the last token of the pair (safe-rlhf's ``end_scores``), unnormalised. A cost model scores
harm, so maximise its negation: ``cost=neg:score:...``. Templates as for ``hf:``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hoe.objectives.base import ObjectiveContext, check_objective, register_objective
from hoe.objectives.reward_model import TEMPLATES, RewardModel, parse_hf_spec

HEAD = "score_head"


@dataclass
class ScoreModel(RewardModel):
    kind = "score"
    what = "safe-rlhf score model (a backbone and a score_head, in safetensors)"

    def load(self, folder: Path) -> Any:
        from transformers import AutoModel
        from transformers.utils import logging

        tensors = head_tensors(folder)
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # the backbone alone: its report would list score_head as unexpected
        try:
            backbone = AutoModel.from_pretrained(str(folder), local_files_only=True)
        finally:
            logging.set_verbosity(verbosity)
        weight = tensors[f"{HEAD}.weight"]
        head = nn.Linear(weight.shape[1], weight.shape[0], bias=f"{HEAD}.bias" in tensors)
        head.load_state_dict({k.removeprefix(f"{HEAD}."): v for k, v in tensors.items()})
        return Scorer(backbone, head.to(backbone.dtype))

    def num_outputs(self) -> int:
        return self.model.head.out_features

    def outputs(self, enc: Any) -> torch.Tensor:
        return self.model(**enc)


class Scorer(nn.Module):
    """A backbone and a linear head read at the last real token of each right-padded row: (b, score_dim)."""

    def __init__(self, backbone: nn.Module, head: nn.Linear):
        super().__init__()
        self.backbone, self.head = backbone, head

    @property
    def config(self) -> Any:
        return self.backbone.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        end = attention_mask.sum(-1) - 1  # (b,) the last real token
        return self.head(hidden[torch.arange(hidden.shape[0]), end])


def head_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """The ``score_head`` tensors of the safetensors checkpoint in ``folder`` (sharded or not)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(
            {folder / f for k, f in json.loads(index.read_text())["weight_map"].items() if k.startswith(HEAD)}
        )
    else:
        files = sorted(folder.glob("*.safetensors"))
    out: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            out.update({k: st.get_tensor(k) for k in st.keys() if k.startswith(f"{HEAD}.")})  # noqa: SIM118 (not iterable)
    if f"{HEAD}.weight" not in out:
        raise OSError(f"no {HEAD}.weight in the safetensors files of {str(folder)!r}")
    return out


def parse_score_spec(arg: str | None) -> tuple[str, int, str | None]:
    return parse_hf_spec(arg, "score", "PKU-Alignment/beaver-7b-v1.0-reward#beaver")


check_objective("score")(parse_score_spec)


@register_objective("score")
def score_model(arg: str | None, context: ObjectiveContext) -> ScoreModel:
    ref, index, template = parse_score_spec(arg)
    return ScoreModel(ref, index, TEMPLATES.get(template) if template else None, device=context.device)
