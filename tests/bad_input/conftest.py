"""Inputs shared by the bad-input suite, made once per session: tiny random models, no network."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from conftest import build_model, make_peft_adapter, save_model
from tiny_lm import char_tokenizer


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """A tiny Llama base, a rank-4 PEFT adapter of it (q_proj, v_proj) and two experts extracted from such."""
    from hoe import extract

    root = tmp_path_factory.mktemp("experts-inputs")
    save_model(build_model("llama"), root / "base")
    adapter = make_peft_adapter(root / "a", r=4, seed=1)
    other = make_peft_adapter(root / "b", r=4, seed=2)
    experts = extract(
        str(root / "base"), {"helpful": adapter, "harmless": other}, rank=4, out=root / "x", progress=False
    )
    return {"base": root / "base", "adapter": adapter, **experts}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny Llama base (char tokenizer), two PEFT LoRA experts, a bundle of them, and a second bundle whose
    base folder no longer exists."""
    from hoe import build

    root = tmp_path_factory.mktemp("bundle-inputs")
    base = save_model(build_model("llama"), root / "base")
    char_tokenizer().save_pretrained(base)
    helpful = make_peft_adapter(root / "a", seed=1)
    harmless = make_peft_adapter(root / "b", seed=2)
    experts = {"helpful": helpful, "harmless": harmless}
    bundle = build(str(base), experts, root / "bundle")
    shutil.copytree(base, root / "gone")
    baseless = build(str(root / "gone"), experts, root / "baseless")
    shutil.rmtree(root / "gone")
    return SimpleNamespace(
        root=root, base=base, helpful=helpful, harmless=harmless, bundle=bundle, baseless=baseless
    )
