"""Broken LoRA experts and adapters given to `extract`, `merge` and `build`: refused before any work.

Each case exits 2 with one line naming the flag the broken folder came from (and the file, module and shapes
at fault), never a traceback, and leaves the output folder (which already holds an artifact and is passed
with --overwrite) byte-identical.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from hoe.errors import CheckpointError
from hoe.io.adapters import ADAPTER_WEIGHTS, EXPERT_RECORD, read_record

from bad_input.helpers import assert_refused, cli, snapshot

Q0 = "model.layers.0.self_attn.q_proj"  # tiny Llama: q_proj is (32, 32), v_proj (16, 32)


@pytest.fixture
def out(tmp_path):
    """An output folder that already holds an artifact, to be left exactly as it is."""
    folder = tmp_path / "out"
    (folder / "helpful").mkdir(parents=True)
    (folder / "helpful" / ADAPTER_WEIGHTS).write_bytes(b"previous")
    (folder / "README.md").write_text("previous\n")
    return folder


def edited_copy(src, dst, edits: dict[tuple[str, str], torch.Tensor]):
    """Copy the adapter folder ``src`` to ``dst``, replacing ``(module, "A" | "B")`` -> lora_A / lora_B tensors."""
    shutil.copytree(src, dst)
    weights = load_file(str(dst / ADAPTER_WEIGHTS))
    for (module, ab), t in edits.items():
        key = f"base_model.model.{module}.lora_{ab}.weight"
        assert key in weights, sorted(weights)
        weights[key] = t
    save_file(weights, str(dst / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return dst


def refused(capsys, out, *args, flag: str) -> str:
    before = snapshot(out.parent)
    code, err = cli(capsys, *args, "--out", out, "--overwrite")
    assert_refused(code, err, flag)
    assert snapshot(out.parent) == before
    return err


def merge_args(helpful, harmless):
    return ["merge", "--expert", f"helpful={helpful}", "--expert", f"harmless={harmless}"] + [
        "--preference",
        "0.5,0.5",
        "--rank",
        "4",
    ]


def build_args(inputs, helpful):
    return ["build", "--base", inputs["base"], "--expert", f"helpful={helpful}"] + [
        "--expert",
        f"harmless={inputs['harmless']}",
    ]


@pytest.fixture
def ab_mismatch(inputs, tmp_path):
    """The adapter with q_proj's lora_B of rank 3 while its lora_A has rank 4 (PEFT layout A (r, in), B (out, r))."""
    return edited_copy(inputs["adapter"], tmp_path / "ab", {(Q0, "B"): 0.1 * torch.ones(32, 3)})


def test_extract_refuses_ab_rank_mismatch(capsys, inputs, out, ab_mismatch):
    """It used to pass the adapter through and report "energy kept 1.0000"."""
    args = ["extract", "--base", inputs["base"], "--tuned", f"helpful={ab_mismatch}", "--rank", "4"]
    err = refused(capsys, out, *args, flag="--tuned")
    assert Q0 in err and "rank 4" in err and "rank 3" in err and str(ab_mismatch) in err, err


def test_merge_and_build_refuse_ab_rank_mismatch(capsys, inputs, out, ab_mismatch):
    """read_adapter checks the factors, so every reader refuses (build used to crash later on it)."""
    err = refused(capsys, out, *merge_args(ab_mismatch, inputs["harmless"]), flag="--expert")
    assert Q0 in err and "rank 3" in err, err
    err = refused(capsys, out, *build_args(inputs, ab_mismatch), flag="--expert")
    assert Q0 in err and "rank 3" in err, err


def test_extract_refuses_config_rank_mismatch(capsys, inputs, out, tmp_path):
    """Tensors of rank 3 where adapter_config.json says r = 4: PEFT would scale them by alpha/4, not alpha/3."""
    bad = edited_copy(
        inputs["adapter"], tmp_path / "r3", {(Q0, "A"): torch.ones(3, 32), (Q0, "B"): torch.ones(32, 3)}
    )
    args = ["extract", "--base", inputs["base"], "--tuned", f"helpful={bad}", "--rank", "4"]
    err = refused(capsys, out, *args, flag="--tuned")
    assert Q0 in err and "adapter_config.json gives rank 4" in err, err


def test_extract_refuses_adapter_that_does_not_fit_the_base(capsys, inputs, out, tmp_path):
    """q_proj's delta B @ A would be (32, 16); the base's q_proj is (32, 32)."""
    bad = edited_copy(inputs["adapter"], tmp_path / "narrow", {(Q0, "A"): torch.ones(4, 16)})
    args = ["extract", "--base", inputs["base"], "--tuned", f"helpful={bad}", "--rank", "4"]
    err = refused(capsys, out, *args, flag="--tuned")
    assert Q0 in err and "(32, 16)" in err and "(32, 32)" in err, err


def test_merge_shape_disagreement_names_both_experts(capsys, inputs, out, tmp_path):
    """The bad expert is the first one; the error used to blame only the second (good) one."""
    bad = edited_copy(inputs["helpful"], tmp_path / "bad", {(Q0, "A"): torch.ones(4, 16)})
    err = refused(capsys, out, *merge_args(bad, inputs["harmless"]), flag="--expert")
    assert "'helpful'" in err and "'harmless'" in err, err
    assert Q0 in err and "(32, 16)" in err and "(32, 32)" in err, err


GARBAGE_RECORDS = {
    "not JSON": "{ this is not json",
    "not an object": "[1, 2, 3]",
    "anchor not a mapping": json.dumps({"anchor": [0.5, 0.5]}),
    "anchor not numbers": json.dumps({"anchor": {"helpful": "lots"}}),
    "anchor NaN": '{"anchor": {"helpful": NaN}}',
}


@pytest.mark.parametrize("garbage", list(GARBAGE_RECORDS.values()), ids=list(GARBAGE_RECORDS))
@pytest.mark.parametrize("command", ["merge", "build"])
def test_garbage_expert_record_is_refused_naming_the_file(capsys, inputs, out, tmp_path, garbage, command):
    expert = shutil.copytree(inputs["helpful"], tmp_path / "garbled")
    (expert / EXPERT_RECORD).write_text(garbage)
    args = merge_args(expert, inputs["harmless"]) if command == "merge" else build_args(inputs, expert)
    err = refused(capsys, out, *args, flag="--expert")
    assert str(expert / EXPERT_RECORD) in err, err


def test_read_record_error_is_data(tmp_path):
    (tmp_path / EXPERT_RECORD).write_text("[]")
    with pytest.raises(CheckpointError) as caught:
        read_record(tmp_path, field="model")
    assert caught.value.field == "model" and str(caught.value).startswith("model: ")
    # no record at all is fine: the expert is then the vertex of its own name
    assert read_record(tmp_path / "absent") is None
