"""What a stored evaluation point was made from (hoe.evaluation.identity): LoRA experts by their fingerprints,
routers by their entries and weights, full models by their files' content; never by how or when files were
written, so a rebuilt bundle keeps its points and a changed model redoes them."""

from __future__ import annotations

import json
import shutil

import torch
from safetensors.torch import load_file, save_file

from hoe.evaluation.identity import adapter_identity, bundle_identity, file_content, model_identity
from hoe.io.adapters import read_adapter

from conftest import build_model, make_peft_adapter, save_model


def test_the_bundle_identity_ignores_what_loading_does_not_read(tmp_path):
    """Two parts, so that attaching or retraining routers keeps the points of the methods without them."""

    def manifest(**kw):
        entries = {
            "base": "b",
            "objectives": ["x", "y"],
            "experts": [{"name": "a", "path": "experts/a"}],
            "routers": [],
        }
        (tmp_path / "hoe_bundle.json").write_text(json.dumps({**entries, "command": "hoe build", **kw}))

    expert = tmp_path / "experts" / "a"
    shutil.copytree(make_peft_adapter(tmp_path / "one", seed=1), expert)
    manifest()
    before = {part: bundle_identity(tmp_path, part) for part in ("experts", "routers")}
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "state.json").write_text("{}")
    (tmp_path / "eval_router.json").write_text("{}")
    (expert / "README.md").write_text("another card")
    manifest(command="hoe build --router-from r")  # how it was built is not what it is
    assert {p: bundle_identity(tmp_path, p) for p in before} == before
    manifest(routers=[{"name": "r"}])
    (tmp_path / "routers.safetensors").write_bytes(b"r")
    assert bundle_identity(tmp_path, "experts") == before["experts"] != bundle_identity(tmp_path, "routers")
    assert bundle_identity(tmp_path, "routers") != before["routers"]
    shutil.rmtree(expert)
    shutil.copytree(make_peft_adapter(tmp_path / "two", seed=2), expert)  # another expert under the same name
    assert bundle_identity(tmp_path, "experts") != before["experts"]


def test_identities_hash_the_fingerprints_bits_not_their_float_sketches(tmp_path):
    """A router entry with or without its experts' sketches (a bundle before and after sketches existed, or
    sums that differ in the last bit on another machine) keeps the points."""
    fingerprint = {"rank": 4, "sha256": "ab" * 32}

    def routers(**extra):
        router = {
            "name": "r",
            "anchor": [0.5, 0.5],
            "experts": ["a"],
            "fingerprint": {"a": fingerprint | extra},
        }
        (tmp_path / "hoe_bundle.json").write_text(json.dumps({"objectives": ["x", "y"], "routers": [router]}))
        return bundle_identity(tmp_path, "routers")

    plain = routers()
    assert routers(sketch={"modules": "0", "norm2": 1.0, "probes": [0.5] * 8}) == plain
    assert routers(sketch={"modules": "0", "norm2": 1.0000000001, "probes": [0.5] * 8}) == plain
    fingerprint["sha256"] = "cd" * 32
    assert routers() != plain


def test_an_expert_is_identified_by_its_values_not_its_bytes(tmp_path):
    """The same factors saved again with other metadata keep the identity (the resume bug of 76560b0 came
    from identifying experts by bytes); other values change it."""
    folder = make_peft_adapter(tmp_path, seed=1)
    weights = folder / "adapter_model.safetensors"
    before = adapter_identity(read_adapter(folder))
    tensors = load_file(str(weights))
    save_file(tensors, str(weights), metadata={"format": "pt", "written": "again"})
    assert adapter_identity(read_adapter(folder)) == before
    save_file({k: v + 1e-3 for k, v in tensors.items()}, str(weights), metadata={"format": "pt"})
    assert adapter_identity(read_adapter(folder)) != before


def test_a_full_model_is_identified_by_its_files_content(tmp_path):
    folder = save_model(build_model("llama"), tmp_path / "m")
    before = model_identity(folder)
    (folder / "README.md").write_text("not read when loading")
    (folder / "config.json").touch()  # a new modification time, the same content
    assert model_identity(folder) == before
    save_model(build_model("llama", seed=1), folder)
    assert model_identity(folder) != before


def test_the_bundle_digest_reads_a_safetensors_header_in_any_key_order(tmp_path):
    """safetensors writes its metadata map in an order that varies between processes: the same file content in
    another header order has the same digest (a rebuilt bundle keeps its evaluation points), other content not."""
    save_file(
        {"w": torch.ones(2)}, str(tmp_path / "a.safetensors"), metadata={"format": "pt", "experts": "[1]"}
    )
    data = (tmp_path / "a.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    compact = json.dumps(dict(reversed(list(header.items()))), separators=(",", ":"))
    reordered = compact.encode().ljust(n)  # padded to the same length: the same data offsets
    assert reordered != data[8 : 8 + n]
    (tmp_path / "b.safetensors").write_bytes(data[:8] + reordered + data[8 + n :])
    assert file_content(tmp_path / "a.safetensors") == file_content(tmp_path / "b.safetensors")
    save_file(
        {"w": torch.zeros(2)}, str(tmp_path / "c.safetensors"), metadata={"format": "pt", "experts": "[1]"}
    )
    assert file_content(tmp_path / "c.safetensors") != file_content(tmp_path / "a.safetensors")
