"""``hoe export``: a plain checkpoint at one preference, equal to HoE there and loadable by transformers alone."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from hoe import HoEModel, HoEWarning, export
from hoe.errors import ConfigError, OutputExistsError

from bad_input.helpers import assert_refused, cli, snapshot
from conftest import tiny_bundle

IDS = torch.randint(4, 90, (2, 7), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("export"), routers={"mid": "0.5,0.5"})[2]


def hoe_logits(bundle, preference) -> torch.Tensor:
    with torch.no_grad():
        return HoEModel.from_pretrained(bundle)(input_ids=IDS, preference=preference).logits


def plain_logits(folder) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_at_a_vertex_the_export_is_that_expert_merged_and_loads_alone(bundle, tmp_path):
    out = export(bundle, "helpful=1", tmp_path / "helpful")
    torch.testing.assert_close(plain_logits(out), hoe_logits(bundle, [1.0, 0.0]), rtol=0, atol=1e-5)
    record = json.loads((out / "hoe_export.json").read_text())
    assert record["expert_weights"] == {"helpful": 1.0} and record["routers_left_out"] == ["mid"]
    assert (out / "tokenizer.json").is_file() and (out / "model.safetensors").is_file()


def test_between_the_experts_it_is_hoe_without_routers_and_says_so(bundle, tmp_path):
    with pytest.warns(HoEWarning, match="token by token"):
        out = export(bundle, [0.25, 0.75], tmp_path / "mix")  # between the router "mid" and harmless
    with torch.no_grad():
        lora_only = HoEModel.from_pretrained(bundle)(input_ids=IDS, expert_weights=[0.25, 0.75]).logits
    torch.testing.assert_close(plain_logits(out), lora_only, rtol=0, atol=1e-5)


def test_bad_input_writes_nothing(bundle, tmp_path):
    with pytest.raises(ConfigError) as e:
        export(bundle, "funny=1", tmp_path / "x")
    assert e.value.field == "preference" and not (tmp_path / "x").exists()
    with pytest.raises(ConfigError) as e:
        export(bundle, "helpful=1", tmp_path / "x", dtype="int8")
    assert e.value.field == "dtype" and not (tmp_path / "x").exists()
    done = export(bundle, "helpful=1", tmp_path / "y")
    before = snapshot(done)
    with pytest.raises(OutputExistsError):
        export(bundle, "harmless=1", done)
    assert snapshot(done) == before


def test_the_cli(bundle, tmp_path, capsys):
    code, err = cli(
        capsys, "export", "--model", bundle, "--preference", "harmless=1", "--out", tmp_path / "h"
    )
    assert code == 0, err
    torch.testing.assert_close(
        plain_logits(tmp_path / "h"), hoe_logits(bundle, [0.0, 1.0]), rtol=0, atol=1e-5
    )
    code, err = cli(
        capsys, "export", "--model", bundle, "--preference", "helpful=-1", "--out", tmp_path / "z"
    )
    assert_refused(code, err, "--preference")
    assert not (tmp_path / "z").exists()
