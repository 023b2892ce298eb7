"""Shared fixtures: tiny random models saved in temp folders (no network)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))
# the benchmarks' helpers (op_count) live beside the scripts that report them
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def tiny_llama_config():
    from tiny_lm import tiny_config

    return tiny_config()


def tiny_gpt2_config():
    from transformers import GPT2Config

    return GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64)


def build_model(kind: str, seed: int = 0):
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config()) if kind == "llama" else GPT2LMHeadModel(tiny_gpt2_config())
    return model.eval()


def save_model(model, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def add_deltas(model, deltas: dict[str, torch.Tensor]):
    """Add (out, in) deltas to the named modules' weights (transposing for GPT-2 Conv1D)."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, d in deltas.items():
            w = modules[name].weight
            w += d.T if type(modules[name]).__name__ == "Conv1D" else d
    return model


def low_rank(out: int, inp: int, rank: int, seed: int, scale: float = 0.05) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(out, rank, generator=g) @ torch.randn(rank, inp, generator=g)


@pytest.fixture(params=["llama", "gpt2"])
def kind(request) -> str:
    return request.param


def make_peft_adapter(tmp_path, kind="llama", r=4, seed=0):
    """A PEFT LoRA adapter (alpha = 2r, so scaling 2) with random non-zero A and B on q_proj, v_proj."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        build_model(kind), LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"])
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    model.save_pretrained(str(tmp_path / "adapter"))
    return tmp_path / "adapter"


@pytest.fixture
def two_experts(tmp_path):
    """Two extracted rank-4 LoRA experts (q_proj, v_proj of a tiny Llama) named helpful and harmless."""
    from hoe import extract

    save_model(build_model("llama"), tmp_path / "base")
    a = make_peft_adapter(tmp_path / "a", r=4, seed=1)
    b = make_peft_adapter(tmp_path / "b", r=4, seed=2)
    return extract(
        str(tmp_path / "base"), {"helpful": a, "harmless": b}, rank=4, out=tmp_path / "x", progress=False
    )


def tiny_bundle(root: Path, routers: dict[str, str] | None = None):
    """A tiny Llama base with the char tokenizer and a bundle of two PEFT adapters (helpful, harmless)
    extracted at rank 2, so the LoRA experts are not the adapters; ``routers`` as for ``hoe.build``.
    Returns (base folder, {name: adapter folder}, bundle folder)."""
    from hoe import build, extract

    from tiny_lm import char_tokenizer

    base = save_model(build_model("llama"), root / "base")
    char_tokenizer().save_pretrained(base)
    adapters = {
        "helpful": make_peft_adapter(root / "a", seed=1),
        "harmless": make_peft_adapter(root / "b", seed=2),
    }
    experts = extract(str(base), adapters, rank=2, out=root / "experts", progress=False)
    return base, adapters, build(str(base), experts, root / "bundle", routers=routers or {})
