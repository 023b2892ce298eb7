"""`hoe.merge` end to end: merging happens on full deltas ΔW = B A, then task-SVD."""

from __future__ import annotations

import pytest
import torch

from hoe import merge
from hoe.experts.merging.pcb import pcb
from hoe.io.adapters import read_adapter, read_record


def test_task_arithmetic_merges_full_deltas_not_factors(two_experts, tmp_path):
    lam = {"helpful": 0.25, "harmless": 0.75}
    merged = merge(two_experts, lam, rank=8, out=tmp_path / "m", method="task_arithmetic", progress=False)
    ea, eb = read_adapter(two_experts["helpful"]), read_adapter(two_experts["harmless"])
    for name, w in read_adapter(merged).items():
        explicit = 0.25 * ea[name].B @ ea[name].A + 0.75 * eb[name].B @ eb[name].A
        torch.testing.assert_close(w.delta(), explicit, atol=1e-5, rtol=0)
        factor_mix = (0.25 * ea[name].B + 0.75 * eb[name].B) @ (0.25 * ea[name].A + 0.75 * eb[name].A)
        assert not torch.allclose(w.delta(), factor_mix, atol=1e-3)
    record = read_record(merged)
    assert record["kind"] == "merged"
    assert record["anchor"] == pytest.approx(lam) and record["preference"] == pytest.approx(lam)


def test_pcb_merge_equals_pcb_on_explicit_deltas_then_svd(two_experts, tmp_path):
    merged = merge(two_experts, "0.5,0.5", rank=3, out=tmp_path / "m", method="pcb", progress=False)
    ea, eb = read_adapter(two_experts["helpful"]), read_adapter(two_experts["harmless"])
    for name, w in read_adapter(merged).items():
        full = pcb(
            torch.stack([ea[name].delta(), eb[name].delta()]).double(), torch.tensor([0.5, 0.5]).double()
        )
        U, S, Vh = torch.linalg.svd(full)
        torch.testing.assert_close(
            w.delta().double(), U[:, :3] @ torch.diag(S[:3]) @ Vh[:3], atol=1e-4, rtol=0
        )


def test_merged_experts_compose_anchors(two_experts, tmp_path):
    mid = merge(two_experts, "0.5,0.5", rank=4, out=tmp_path / "mid", method="ties", progress=False)
    again = merge(
        {"mid": mid, "helpful": two_experts["helpful"]},
        "mid=0.5,helpful=0.5",
        rank=4,
        out=tmp_path / "again",
        method="task_arithmetic",
        progress=False,
    )
    assert read_record(again)["anchor"] == pytest.approx({"helpful": 0.75, "harmless": 0.25})


def test_records_store_local_folders_as_absolute_paths(two_experts, tmp_path, monkeypatch):
    from hoe import extract

    from conftest import make_peft_adapter

    monkeypatch.chdir(tmp_path)  # relative paths below, as a user in that folder would type them
    c = make_peft_adapter(tmp_path / "c", r=4, seed=3)
    single = extract("base", {"helpful": c.relative_to(tmp_path)}, rank=2, out="y", progress=False)["helpful"]
    assert read_record(single)["base"] == str(tmp_path / "base")
    relative = {n: p.relative_to(tmp_path) for n, p in two_experts.items()}
    merged = merge(relative, "0.5,0.5", rank=2, out="m", method="task_arithmetic", progress=False)
    assert read_record(merged)["sources"] == {n: str(p) for n, p in two_experts.items()}
