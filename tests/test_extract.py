"""Extraction of LoRA experts: exact recovery, PEFT parity (Llama and GPT-2), sparsity, adapter inputs."""

from __future__ import annotations

import json

import pytest
import torch

from hoe import extract
from hoe.experts.targets import find_target_modules
from hoe.io.adapters import read_adapter, read_record

from conftest import add_deltas, build_model, low_rank, make_peft_adapter, save_model


def tuned_pair(kind, tmp_path, rank=2, seed=1):
    """Save a tiny base and a fine-tune = base + a rank-`rank` delta on every target module."""
    base = build_model(kind)
    save_model(base, tmp_path / "base")
    modules = find_target_modules(base)
    deltas = {m.name: low_rank(m.out_features, m.in_features, rank, seed + i) for i, m in enumerate(modules)}
    tuned = add_deltas(build_model(kind), deltas)
    save_model(tuned, tmp_path / "tuned")
    return base, tuned, deltas


def peft_logits(base_folder, adapter, kind, ids):
    from peft import PeftModel

    model = PeftModel.from_pretrained(build_model(kind), str(adapter)).eval()
    with torch.no_grad():
        return model(ids).logits


def test_default_targets_are_block_projections(kind):
    names = {m.name.rsplit(".", 1)[-1] for m in find_target_modules(build_model(kind))}
    expected = {
        "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
        "gpt2": {"c_attn", "c_proj", "c_fc"},
    }[kind]
    assert names == expected  # lm_head, embeddings and norms excluded


def test_extract_recovers_low_rank_deltas_and_matches_peft(kind, tmp_path):
    _, tuned, deltas = tuned_pair(kind, tmp_path)
    out = extract(
        str(tmp_path / "base"),
        {"helpful": tmp_path / "tuned"},
        rank=2,
        out=tmp_path / "experts",
        sparsity=0.0,
        progress=False,
    )
    adapter = out["helpful"]
    weights = read_adapter(adapter)
    assert set(weights) == set(deltas)
    for name, d in deltas.items():
        torch.testing.assert_close(weights[name].delta(), d, atol=1e-5, rtol=0)
    ids = torch.randint(0, 128, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = tuned(ids).logits
    torch.testing.assert_close(
        peft_logits(tmp_path / "base", adapter, kind, ids), expected, atol=1e-4, rtol=0
    )
    record = read_record(adapter)
    assert record["anchor"] == {"helpful": 1.0} and record["energy_min"] == pytest.approx(1.0, abs=1e-5)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["fan_in_fan_out"] is (kind == "gpt2") and cfg["lora_alpha"] == cfg["r"] == 2


def test_energy_rank_gives_per_module_ranks_that_peft_loads(tmp_path):
    base = build_model("llama")
    save_model(base, tmp_path / "base")
    modules = find_target_modules(base)
    # module i gets a delta of rank 1 + i % 3, so a 0.999999 energy fraction keeps exactly that rank
    deltas = {m.name: low_rank(m.out_features, m.in_features, 1 + i % 3, i) for i, m in enumerate(modules)}
    tuned = add_deltas(build_model("llama"), deltas)
    save_model(tuned, tmp_path / "tuned")
    adapter = extract(
        str(tmp_path / "base"),
        {"x": tmp_path / "tuned"},
        rank=0.999999,
        out=tmp_path / "e",
        sparsity=0.0,
        progress=False,
    )["x"]
    ranks = {n: w.rank for n, w in read_adapter(adapter).items()}
    assert ranks == {m.name: 1 + i % 3 for i, m in enumerate(modules)}
    ids = torch.arange(12).view(2, 6)
    with torch.no_grad():
        expected = tuned(ids).logits
    torch.testing.assert_close(
        peft_logits(tmp_path / "base", adapter, "llama", ids), expected, atol=1e-4, rtol=0
    )


def test_sparsity_drops_the_globally_smallest_entries(tmp_path):
    base, tuned, _ = tuned_pair("llama", tmp_path, rank=3)
    modules = dict(tuned.named_modules())
    # the exact fp32 task vectors as stored: (base + d) - base is d up to rounding
    deltas = {
        m.name: modules[m.name].weight.detach() - dict(base.named_modules())[m.name].weight.detach()
        for m in find_target_modules(base)
    }
    adapter = extract(
        str(tmp_path / "base"),
        {"x": tmp_path / "tuned"},
        rank=1.0,
        out=tmp_path / "e",
        sparsity=0.3,
        progress=False,
    )["x"]
    everything = torch.cat([d.flatten() for d in deltas.values()])
    threshold = everything.abs().sort().values[int(everything.numel() * 0.3) - 1]
    for name, w in read_adapter(adapter).items():  # full rank: B A is the sparsified delta itself
        sparse = torch.where(deltas[name].abs() <= threshold, 0.0, deltas[name])
        torch.testing.assert_close(w.delta(), sparse, atol=2e-5, rtol=0)
    dropped = sum(int((d.abs() <= threshold).sum()) for d in deltas.values())
    assert dropped == int(everything.numel() * 0.3)


def test_peft_adapter_is_passed_through_or_retruncated(tmp_path):
    save_model(build_model("llama"), tmp_path / "base")
    src = make_peft_adapter(tmp_path, r=4)
    original = read_adapter(src)  # scaling alpha/r = 2 folded into B
    out = extract(str(tmp_path / "base"), {"a": src, "b": src}, rank=4, out=tmp_path / "e", progress=False)
    ids = torch.arange(10).view(1, 10)
    torch.testing.assert_close(
        peft_logits(tmp_path / "base", out["a"], "llama", ids),
        peft_logits(tmp_path / "base", src, "llama", ids),
        atol=1e-5,
        rtol=0,
    )
    lower = extract(str(tmp_path / "base"), {"a": src}, rank=2, out=tmp_path / "e2", progress=False)["a"]
    for name, w in read_adapter(lower).items():
        full = original[name].delta().double()
        U, S, Vh = torch.linalg.svd(full)
        torch.testing.assert_close(
            w.delta().double(), U[:, :2] @ torch.diag(S[:2]) @ Vh[:2], atol=1e-5, rtol=0
        )


def test_sharded_checkpoints_are_read_through_their_index(tmp_path):
    base = build_model("llama")
    base.save_pretrained(tmp_path / "base", max_shard_size="20KB")
    modules = find_target_modules(base)
    deltas = {m.name: low_rank(m.out_features, m.in_features, 1, i) for i, m in enumerate(modules)}
    add_deltas(build_model("llama"), deltas).save_pretrained(tmp_path / "tuned", max_shard_size="20KB")
    assert (tmp_path / "tuned" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "tuned").glob("*.safetensors"))) > 1
    adapter = extract(
        str(tmp_path / "base"),
        {"x": tmp_path / "tuned"},
        rank=1,
        out=tmp_path / "e",
        sparsity=0.0,
        progress=False,
    )["x"]
    for name, w in read_adapter(adapter).items():
        torch.testing.assert_close(w.delta(), deltas[name], atol=1e-5, rtol=0)
