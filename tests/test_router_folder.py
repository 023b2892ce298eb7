"""A trained router on its own (``hoe save-router``) and attached to a bundle rebuilt from the same experts
(``hoe build --router-from``); refused next to other experts."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from hoe import HoEModel, build, save_router
from hoe.bundle.router_folder import ROUTER_FILE, ROUTER_MANIFEST
from hoe.errors import CheckpointError, ConfigError

from bad_input.helpers import cli
from conftest import build_model, make_peft_adapter, save_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two PEFT experts, a bundle with routers "a" and "b" whose weights are random (as if trained), and a
    second pair of experts under the same names."""
    root = tmp_path_factory.mktemp("router_folder")
    base = save_model(build_model("llama"), root / "base")
    experts = {
        "helpful": make_peft_adapter(root / "e1", seed=1),
        "harmless": make_peft_adapter(root / "e2", seed=2),
    }
    others = {
        "helpful": make_peft_adapter(root / "o1", seed=3),
        "harmless": make_peft_adapter(root / "o2", seed=4),
    }
    untrained = build(str(base), experts, root / "untrained", routers={"a": "0.3,0.7", "b": "0.6,0.4"})
    model = HoEModel.from_pretrained(untrained)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.router_parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    trained = model.save_pretrained(root / "trained")
    (trained / "hoe_router_training.json").write_text(json.dumps({"router": "b", "steps_done": 3}))
    return SimpleNamespace(root=root, base=base, experts=experts, others=others, trained=trained)


def build_args(tiny, out) -> list:
    """``hoe build`` of the two experts into ``out``."""
    experts = [f"{name}={folder}" for name, folder in tiny.experts.items()]
    return ["build", "--base", tiny.base, "--expert", experts[0], "--expert", experts[1], "--out", out]


def logits(model: HoEModel, preference) -> torch.Tensor:
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        return model(ids, preference=preference).logits


def test_a_saved_router_attached_to_a_rebuilt_bundle_routes_as_it_did(tiny, tmp_path):
    folder = save_router(tiny.trained, "b", tmp_path / "b", dtype=torch.float32)
    record = json.loads((folder / ROUTER_MANIFEST).read_text())
    assert record["name"] == "b" and list(record["bundle_experts"]) == ["helpful", "harmless"]
    assert json.loads((folder / "hoe_router_training.json").read_text())["steps_done"] == 3
    assert (folder / "README.md").read_text().startswith("# Router expert `b`")
    rebuilt = build(str(tiny.base), tiny.experts, tmp_path / "rebuilt", trained_routers=[folder])
    original, copy = HoEModel.from_pretrained(tiny.trained), HoEModel.from_pretrained(rebuilt)
    assert [r.name for r in copy.routers] == ["b"]
    # λ = b's anchor routes to router b alone in both bundles (in the original, router a is elsewhere)
    torch.testing.assert_close(logits(copy, "0.6,0.4"), logits(original, "0.6,0.4"), rtol=0, atol=1e-6)
    # and it is not the untrained (uniform) router: the weights came along
    assert not torch.allclose(
        logits(copy, "0.6,0.4"), logits(HoEModel.from_pretrained(tiny.root / "untrained"), "0.6,0.4")
    )


def test_float16_is_the_default(tiny, tmp_path):
    half = save_router(tiny.trained, "a", tmp_path / "half")
    tensors = load_file(str(half / ROUTER_FILE))
    assert tensors and {t.dtype for t in tensors.values()} == {torch.float16}
    assert not (half / "hoe_router_training.json").exists()  # the record there describes router b


def test_a_router_next_to_other_experts_is_refused_naming_both(tiny, tmp_path):
    folder = save_router(tiny.trained, "b", tmp_path / "b")
    with pytest.raises(CheckpointError, match="was trained to mix the experts helpful") as e:
        build(str(tiny.base), tiny.others, tmp_path / "x", trained_routers=[folder])
    assert e.value.field == "router_from"  # the CLI blames --router-from, not --model
    assert not (tmp_path / "x").exists()
    swapped = {"harmless": tiny.experts["harmless"], "helpful": tiny.experts["helpful"]}
    with pytest.raises(
        CheckpointError, match=r"\['helpful', 'harmless'\], but this one has \['harmless', 'helpful'\]"
    ):
        build(str(tiny.base), swapped, tmp_path / "x", trained_routers=[folder])


def resplit_adapter(adapter: Path, out: Path, noise: float) -> Path:
    """``adapter`` as another machine's SVD may write it: the first rank's signs flipped in A and B (B A is
    unchanged) and every factor moved by a relative ``noise``."""
    import shutil

    from safetensors.torch import save_file

    shutil.copytree(adapter, out)
    tensors = load_file(str(out / "adapter_model.safetensors"))
    g = torch.Generator().manual_seed(0)
    for key, t in tensors.items():
        t = t.clone()
        if "lora_A" in key:
            t[0] = -t[0]
        elif "lora_B" in key:
            t[:, 0] = -t[:, 0]
        tensors[key] = t * (1 + noise * torch.randn(t.shape, generator=g))
    save_file(tensors, str(out / "adapter_model.safetensors"))
    return out


def test_a_router_attaches_to_its_experts_written_again_elsewhere_and_routes_as_it_did(tiny, tmp_path):
    """Other bits for the same deltas (signs, last bits) keep the router; a 1 % change is another expert."""
    folder = save_router(tiny.trained, "b", tmp_path / "b", dtype=torch.float32)
    again = dict(tiny.experts, helpful=resplit_adapter(tiny.experts["helpful"], tmp_path / "again", 1e-7))
    rebuilt = build(str(tiny.base), again, tmp_path / "rebuilt", trained_routers=[folder])
    copy, original = HoEModel.from_pretrained(rebuilt), HoEModel.from_pretrained(tiny.trained)
    assert [r.name for r in copy.routers] == ["b"]
    torch.testing.assert_close(logits(copy, "0.6,0.4"), logits(original, "0.6,0.4"), rtol=0, atol=1e-5)
    moved = dict(tiny.experts, helpful=resplit_adapter(tiny.experts["helpful"], tmp_path / "moved", 1e-2))
    with pytest.raises(CheckpointError, match="was trained to mix the experts helpful"):
        build(str(tiny.base), moved, tmp_path / "x", trained_routers=[folder])


def test_bad_router_folders_and_names_are_clear_errors(tiny, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"no router named 'c'.*\['a', 'b'\]"):
        save_router(tiny.trained, "c", tmp_path / "c")
    assert not (tmp_path / "c").exists()
    code, err = cli(capsys, *build_args(tiny, tmp_path / "x"), "--router-from", tiny.trained)
    assert code == 2 and "--router-from" in err and "not a router folder" in err
    assert not (tmp_path / "x").exists()
    folder = save_router(tiny.trained, "a", tmp_path / "a")
    (folder / ROUTER_FILE).unlink()
    with pytest.raises(CheckpointError, match="no router.safetensors"):
        build(str(tiny.base), tiny.experts, tmp_path / "x", trained_routers=[folder])
    assert not (tmp_path / "x").exists()


def test_the_cli_saves_and_attaches(tiny, tmp_path, capsys):
    code, err = cli(capsys, "save-router", "--model", tiny.trained, "--name", "a", "--out", tmp_path / "a")
    assert code == 0, err
    args = build_args(tiny, tmp_path / "bundle")
    code, err = cli(capsys, *args, "--router-from", tmp_path / "a", "--router", "fresh@0.5,0.5")
    assert code == 0, err
    manifest = json.loads((Path(tmp_path / "bundle") / "hoe_bundle.json").read_text())
    assert [r["name"] for r in manifest["routers"]] == ["a", "fresh"]


def copy_with_manifest(tiny, tmp_path, edit) -> Path:
    """A copy of the trained bundle whose manifest ``edit`` changed in place."""
    import shutil

    folder = Path(shutil.copytree(tiny.trained, tmp_path / "edited"))
    manifest = json.loads((folder / "hoe_bundle.json").read_text())
    edit(manifest)
    (folder / "hoe_bundle.json").write_text(json.dumps(manifest))
    return folder


def test_a_manifest_with_its_experts_reordered_is_refused_not_routed_to_the_wrong_experts(tiny, tmp_path):
    folder = copy_with_manifest(tiny, tmp_path, lambda m: m["experts"].reverse())
    with pytest.raises(
        CheckpointError,
        match=r"in the order \['helpful', 'harmless'\], but the manifest lists \['harmless', 'helpful'\]",
    ) as e:
        HoEModel.from_pretrained(folder)
    assert e.value.field == "model"


def test_an_expert_anchor_off_the_simplex_is_divided_by_its_sum_as_a_routers_is(tiny, tmp_path):
    def edit(m):
        m["experts"][0]["anchor"] = {"helpful": 2.0}  # harmless left out: 0

    model = HoEModel.from_pretrained(copy_with_manifest(tiny, tmp_path, edit))
    assert model.experts[0].anchor == (1.0, 0.0)
    assert model.routing_weights([1.0, 0.0])[0, 0].item() == pytest.approx(1.0)  # λ at its anchor: all on it


def test_a_model_whose_experts_have_no_records_saves_a_bundle_it_can_load(tiny, tmp_path):
    import dataclasses

    model = HoEModel.from_pretrained(tiny.trained)
    model.experts = [dataclasses.replace(e, record={}) for e in model.experts]
    again = HoEModel.from_pretrained(model.save_pretrained(tmp_path / "saved"))
    assert [e.anchor for e in again.experts] == [e.anchor for e in model.experts]
    assert again.experts[0].record == {"anchor": {"helpful": 1.0, "harmless": 0.0}}
