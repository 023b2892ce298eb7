"""Backbones: turn a model argument into a loaded causal LM and its tokenizer.

A model argument (``--base``, a judge model...) is a local folder, a Hugging Face id, or a built-in name
(:mod:`hoe.io.builtin_models`, whose :data:`SMOLLM2` is re-exported here); :mod:`hoe.io.resolve` turns it into
a folder, this module loads what the folder holds.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hoe.errors import CheckpointError
from hoe.io.builtin_models import SMOLLM2
from hoe.io.resolve import resolve_model_dir

__all__ = ["SMOLLM2", "load_causal_lm", "load_model", "load_tokenizer"]


def load_model(ref: str | Path, dtype: torch.dtype = torch.float32, field: str = "base"):
    """Resolve ``ref`` (folder, built-in name or hub id) and load its causal LM in eval mode."""
    from transformers import AutoModelForCausalLM

    folder = resolve_model_dir(ref, field)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot load a causal language model from {str(folder)!r} ({e}).",
            field=field,
            value=str(ref),
            fix="Pass a folder with config.json and *.safetensors, a built-in name or a Hugging Face id.",
        ) from None
    return model.eval()


def load_tokenizer(ref: str | Path, field: str = "base"):
    """Resolve ``ref`` and load its tokenizer, with a pad token (its EOS token) if it has none."""
    from transformers import AutoTokenizer

    folder = resolve_model_dir(ref, field)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot load a tokenizer from {str(folder)!r} ({e}).",
            field=field,
            value=str(ref),
            fix="Save the tokenizer in the model folder (tokenizer.save_pretrained).",
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(ref: str | Path, dtype: torch.dtype = torch.float32, field: str = "base"):
    """``(model, tokenizer)`` of ``ref``, see :func:`load_model` and :func:`load_tokenizer`."""
    return load_model(ref, dtype, field), load_tokenizer(ref, field)
