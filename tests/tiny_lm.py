"""Tiny language models with a character-level tokenizer, built in a temp folder (no network).

The tokenizer maps each printable ASCII character to one token (ids 4..98) after 4 special tokens
``<pad> <s> </s> <unk>``, and has a minimal chat template, so recipes that apply a chat template, generate
and decode run end to end on a model of a few thousand parameters.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


def char_tokenizer(chat: bool = True):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    vocab = {t: i for i, t in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(**overrides):
    from transformers import LlamaConfig

    kwargs = dict(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaConfig(**{**kwargs, **overrides})


def save_tiny_causal_lm(folder: Path, seed: int = 0, chat: bool = True) -> Path:
    """A random 2-layer Llama (hidden 32, vocab 128) and its char tokenizer, saved in ``folder``."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    LlamaForCausalLM(tiny_config()).save_pretrained(folder, safe_serialization=True)
    char_tokenizer(chat).save_pretrained(folder)
    return folder


def save_tiny_classifier(folder: Path, num_labels: int = 2, seed: int = 0, chat: bool = False) -> Path:
    """A random 2-layer LlamaForSequenceClassification with ``num_labels`` outputs and its tokenizer."""
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(seed)
    LlamaForSequenceClassification(tiny_config(num_labels=num_labels)).save_pretrained(
        folder, safe_serialization=True
    )
    char_tokenizer(chat).save_pretrained(folder)
    return folder


def count_a(prompts: list[str], responses: list[str]) -> list[float]:
    """A dotted-path objective for tests: the fraction of the letter ``a`` in each response."""
    return [r.count("a") / max(len(r), 1) for r in responses]


def wrong_length(prompts: list[str], responses: list[str]) -> list[float]:
    return [0.0]


def mean_char_code(prompts: list[str], responses: list[str]) -> list[float]:
    """A dotted-path objective that varies between random responses: the mean character code / 128."""
    return [sum(map(ord, r)) / (128 * max(len(r), 1)) for r in responses]


def upper_share(prompts: list[str], responses: list[str]) -> list[float]:
    """A dotted-path objective that varies between random responses: the fraction of upper-case letters."""
    return [sum(c.isupper() for c in r) / max(len(r), 1) for r in responses]


def save_tiny_score_model(folder: Path, score_dim: int = 1, seed: int = 0) -> Path:
    """A random 2-layer Llama backbone and a ``score_head`` saved the way safe-rlhf's ``AutoModelForScore``
    saves (``model.*`` keys, architecture ``LlamaModelForScore``), with its char tokenizer."""
    from safetensors.torch import save_file
    from transformers import LlamaModel

    torch.manual_seed(seed)
    config = tiny_config(architectures=["LlamaModelForScore"])
    backbone = LlamaModel(config)
    tensors = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    tensors["score_head.weight"] = torch.randn(score_dim, config.hidden_size)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(folder)
    char_tokenizer(chat=False).save_pretrained(folder)
    return folder
