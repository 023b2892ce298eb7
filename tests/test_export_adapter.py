"""``hoe export --format adapter``: HoE without routers at λ as one PEFT LoRA adapter, exact to fp32 rounding.

The bundle has three objectives, six experts of different ranks (one lacking a module, one with a smaller rank
in one module: the zero blocks), so every λ tests the concatenation, not only the common case."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel

from hoe import HoEModel, HoEWarning, export, nearest_adapter
from hoe.errors import ConfigError
from hoe.experts.targets import find_target_modules
from hoe.export.adapter import INDEX, combined_adapter, read_index, vllm_rank
from hoe.io.adapters import LoraWeights, read_adapter
from hoe.model.hoe_model import ExpertSpec

from bad_input.helpers import assert_refused, cli
from conftest import build_model, save_model

OBJECTIVES = ["a", "b", "c"]
ANCHORS = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
RANKS = [2, 3, 1, 2, 4, 2]
IDS = torch.randint(4, 120, (2, 9), generator=torch.Generator().manual_seed(0))
CASES = {
    "vertex": [0.0, 1.0, 0.0],
    "edge": [0.7, 0.3, 0.0],  # between e0 and the (0.5, 0.5, 0) expert
    "interior": [0.2, 0.3, 0.5],  # a cell of three merged experts
    "near a vertex": [0.8, 0.1, 0.1],
}


def random_experts(kind: str) -> list[dict[str, LoraWeights]]:
    modules = find_target_modules(build_model(kind))
    g = torch.Generator().manual_seed(1)
    experts = []
    for k, r in enumerate(RANKS):
        factors = {}
        for i, m in enumerate(modules):
            if k == 3 and i == 0:
                continue  # expert 3 does not adapt the first module
            rank = 1 if (k == 4 and i == 1) else r  # expert 4 has rank 1 in the second module
            factors[m.name] = LoraWeights(
                A=0.3 * torch.randn(rank, m.in_features, generator=g),
                B=0.3 * torch.randn(m.out_features, rank, generator=g),
                transposed=m.transposed,
            )
        experts.append(factors)
    return experts


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def bundle(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"adapter-{request.param}")
    base = save_model(build_model(request.param), root / "base")
    specs = [ExpertSpec(f"e{k}", tuple(float(x) for x in a)) for k, a in enumerate(ANCHORS)]
    model = HoEModel(build_model(request.param), OBJECTIVES, specs, random_experts(request.param), str(base))
    model.add_router("centre", [1 / 3, 1 / 3, 1 / 3])
    return model.save_pretrained(root / "bundle"), base


def peft_logits(base, adapter) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter)).eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("case", list(CASES))
def test_the_adapter_gives_hoe_without_routers_logits_at_its_preference(bundle, case, tmp_path):
    folder, base = bundle
    out = export(folder, CASES[case], tmp_path / "adapter", format="adapter")
    hoe = HoEModel.from_pretrained(folder)
    weights = hoe.lora_only_weights(CASES[case])
    with torch.no_grad():
        expected = hoe(input_ids=IDS, expert_weights=weights).logits
    torch.testing.assert_close(peft_logits(base, out), expected, rtol=0, atol=1e-5)
    config = json.loads((out / "adapter_config.json").read_text())
    widths = [max(RANKS[k], 1) for k in range(len(RANKS)) if weights[k] > 0]  # each block its widest rank
    assert config["r"] == config["lora_alpha"] == sum(widths)  # scaling 1, rank Σ r_j
    assert not config.get("rank_pattern") and len(widths) <= len(OBJECTIVES)


def test_a_preference_reaching_a_router_warns_and_leaves_it_out(bundle, tmp_path):
    folder, _ = bundle
    with pytest.warns(HoEWarning, match="one adapter cannot"):
        export(folder, [1 / 3, 1 / 3, 1 / 3], tmp_path / "centre", format="adapter")
    record = json.loads((tmp_path / "centre" / "hoe_expert.json").read_text())
    assert record["routers_left_out"] == ["centre"]


def test_a_grid_writes_every_lattice_point_and_an_index_a_client_can_use(bundle, tmp_path):
    folder, base = bundle
    out = export(folder, None, tmp_path / "grid", format="adapter", grid=2)  # no point reaches the router
    index = read_index(out)
    assert len(index["adapters"]) == 6 and index["objectives"] == OBJECTIVES
    for entry in index["adapters"].values():
        assert (out / entry["path"] / "adapter_model.safetensors").is_file()
        assert sum(entry["preference"].values()) == pytest.approx(1.0)
    assert nearest_adapter(index, [0.9, 0.1, 0.0]) == "a1-b0-c0"
    assert nearest_adapter(out / INDEX, "b=0.6,c=0.4") == "a0-b0.5-c0.5"
    assert index["vllm"].startswith(f"vllm serve {base} --enable-lora --max-lora-rank 8 ")
    assert all(f"{n}={out.resolve() / n}" in index["vllm"] for n in index["adapters"])
    torch.testing.assert_close(  # an adapter of the grid is the single export at that point
        peft_logits(base, out / "a0.5-b0.5-c0"),
        peft_logits(base, export(folder, [0.5, 0.5, 0.0], tmp_path / "one", format="adapter")),
        rtol=0,
        atol=0,
    )


def test_the_concatenation_is_the_weighted_sum_of_deltas():
    """Pure: [B_1 B_2][w_1 A_1; w_2 A_2] = w_1 B_1 A_1 + w_2 B_2 A_2, zero blocks where an expert lacks a
    module; experts of weight 0 are left out."""
    g = torch.Generator().manual_seed(0)
    f = lambda r: LoraWeights(A=torch.randn(r, 5, generator=g), B=torch.randn(4, r, generator=g))  # noqa: E731
    experts = [{"m": f(2), "n": f(2)}, {"m": f(3)}, {"m": f(1), "n": f(1)}]
    out, rank = combined_adapter(experts, [0.25, 0.75, 0.0])
    assert rank == 5 and {k: v.rank for k, v in out.items()} == {"m": 5, "n": 5}
    torch.testing.assert_close(
        out["m"].delta(), 0.25 * experts[0]["m"].delta() + 0.75 * experts[1]["m"].delta()
    )
    torch.testing.assert_close(out["n"].delta(), 0.25 * experts[0]["n"].delta())


def test_bad_input_is_refused_naming_the_field(bundle, tmp_path):
    folder, _ = bundle
    for kwargs, field in [
        ({"format": "onnx"}, "format"),
        ({"format": "merged", "grid": 2, "preference": None}, "grid"),
        ({"format": "adapter", "grid": 0, "preference": None}, "grid"),
        ({"format": "adapter", "grid": None, "preference": None}, "preference"),
    ]:
        args = {"preference": [1.0, 0.0, 0.0], **kwargs}
        with pytest.raises(ConfigError) as e:
            export(folder, args.pop("preference"), tmp_path / "x", **args)
        assert e.value.field == field and not (tmp_path / "x").exists()
    assert vllm_rank(24) == 32 and vllm_rank(8) == 8
    with pytest.raises(ConfigError):
        vllm_rank(600)


@pytest.mark.slow
def test_a_grid_export_of_the_smol3_experts_loads_every_adapter_and_is_exact(tmp_path):
    """The committed smol3 experts (3 single-objective + 3 PCB midpoints, rank 8) over the embedded SmolLM2:
    every adapter of the 1/4 grid loads with PEFT, has rank 8 × the experts it mixes, and one mixed point is
    Σ_j w_j B_j A_j in every module (float64, to 1e-6) and gives HoE-LoRA's logits to fp32 rounding: 30
    layers summed in two orders differ by up to 3.2e-5 here (logits of magnitude ~20), hence 1e-4."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from hoe import build
    from hoe.io.resolve import resolve_model_dir

    root = Path(__file__).resolve().parents[1] / "experts" / "smol3"
    experts = {n: root / n for n in ("relevance", "positivity", "brevity")}
    experts |= {
        n: root / "merged" / n for n in ("relevance-positivity", "relevance-brevity", "positivity-brevity")
    }
    bundle = build("smollm2-135m-instruct", experts, tmp_path / "bundle")
    out = export(bundle, None, tmp_path / "grid", format="adapter", grid=4)
    index = read_index(out)
    assert len(index["adapters"]) == 15
    base = AutoModelForCausalLM.from_pretrained(resolve_model_dir("smollm2-135m-instruct")).eval()
    ids = torch.randint(0, 49152, (1, 12), generator=torch.Generator().manual_seed(0))
    mixed = "relevance0.5-positivity0.25-brevity0.25"
    for name, entry in index["adapters"].items():
        model = PeftModel.from_pretrained(base, str(out / entry["path"])).eval()
        reached = sum(1 for w in entry["preference"].values() if w > 0)
        assert entry["rank"] in {8, 16, 24} and entry["rank"] <= 8 * max(reached, 2)
        if name == mixed:
            with torch.no_grad():
                got = model(input_ids=ids).logits
        base = model.unload()  # the base again, unchanged, for the next adapter
    hoe = HoEModel.from_pretrained(bundle)
    with torch.no_grad():
        expected = hoe(input_ids=ids, preference=[0.5, 0.25, 0.25]).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    adapter = read_adapter(out / mixed)
    parts = [
        (w, read_adapter(bundle / "experts" / n))
        for n, w in zip([e.name for e in hoe.experts], hoe.lora_only_weights([0.5, 0.25, 0.25]).tolist())
        if w > 0
    ]
    for module, factors in adapter.items():
        want = sum(w * p[module].B.double() @ p[module].A.double() for w, p in parts)
        torch.testing.assert_close(factors.B.double() @ factors.A.double(), want, rtol=0, atol=1e-6)


def test_the_cli_writes_a_grid_and_prints_the_vllm_line(bundle, tmp_path, capsys):
    from hoe.cli import run

    folder, base = bundle
    capsys.readouterr()
    args = ["export", "--model", folder, "--format", "adapter", "--grid", "1", "--out", tmp_path / "g"]
    assert run([str(a) for a in [*args, "--print-vllm-args"]]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"adapters: {tmp_path / 'g'}", read_index(tmp_path / "g")["vllm"]]
    assert printed[1].startswith(f"vllm serve {base} --enable-lora --max-lora-rank ")
    code, err = cli(
        capsys,
        "export",
        "--model",
        folder,
        "--print-vllm-args",
        "--preference",
        "a=1",
        "--out",
        tmp_path / "h",
    )
    assert_refused(code, err, "--print-vllm-args")
    code, err = cli(capsys, "export", "--model", folder, "--format", "adapter", "--out", tmp_path / "h")
    assert_refused(code, err, "--preference")
    assert not (tmp_path / "h").exists()
