"""Every documented bad input raises a clear error naming the flag, and leaves no output behind."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from hoe import extract, merge
from hoe.errors import CheckpointError, ConfigError, OutputExistsError, PreferenceError, ShapeMismatchError
from hoe.io.resolve import resolve_model_dir

from conftest import build_model, save_model


@pytest.fixture
def base_and_tuned(tmp_path):
    save_model(build_model("llama"), tmp_path / "base")
    save_model(build_model("llama", seed=1), tmp_path / "tuned")
    return tmp_path / "base", tmp_path / "tuned"


def no_output(tmp_path, name="out"):
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith((name, f".{name}"))]
    return leftovers == []


def edit_weights(folder, edit):
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def run_extract(base, tuned, tmp_path, **kw):
    args = {"rank": 2, "out": tmp_path / "out", "progress": False} | kw
    return extract(str(base), {"helpful": tuned}, **args)


@pytest.mark.parametrize(
    ("rank", "match"), [(0, "^rank: .*>= 1"), (-2, "^rank: "), (1.5, "energy fraction"), (17, "rank <= 16")]
)
def test_bad_rank(base_and_tuned, tmp_path, rank, match):
    with pytest.raises(ConfigError, match=match):
        run_extract(*base_and_tuned, tmp_path, rank=rank)
    assert no_output(tmp_path)


def test_other_architecture(base_and_tuned, tmp_path):
    save_model(build_model("gpt2"), tmp_path / "gpt2")
    with pytest.raises(ShapeMismatchError, match="^tuned: .*gpt2"):
        run_extract(base_and_tuned[0], tmp_path / "gpt2", tmp_path)
    assert no_output(tmp_path)


def test_shape_mismatch_and_missing_tensor(base_and_tuned, tmp_path):
    base, tuned = base_and_tuned
    edit_weights(tuned, lambda t: t.update({"model.layers.0.mlp.up_proj.weight": torch.zeros(65, 32)}))
    with pytest.raises(ShapeMismatchError, match="up_proj.weight"):
        run_extract(base, tuned, tmp_path)
    edit_weights(tuned, lambda t: t.pop("model.layers.0.mlp.up_proj.weight"))
    with pytest.raises(ShapeMismatchError, match="up_proj.weight missing"):
        run_extract(base, tuned, tmp_path)
    assert no_output(tmp_path)


def test_nan_found_half_way_leaves_no_output(base_and_tuned, tmp_path):
    base, tuned = base_and_tuned
    edit_weights(tuned, lambda t: t["model.layers.1.mlp.down_proj.weight"].__setitem__((0, 0), float("nan")))
    with pytest.raises(CheckpointError, match="NaN or Inf"):
        run_extract(base, tuned, tmp_path, sparsity=0.0)
    assert no_output(tmp_path)


def test_truncated_safetensors(base_and_tuned, tmp_path):
    base, tuned = base_and_tuned
    path = tuned / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        run_extract(base, tuned, tmp_path)
    assert no_output(tmp_path)


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(CheckpointError, match="no pickle"):
        run_extract(tmp_path / "m", tmp_path / "m", tmp_path)


def test_existing_output_is_kept(base_and_tuned, tmp_path):
    """An existing expert is replaced only when asked; other contents of the experts folder always stay."""
    (tmp_path / "out" / "helpful").mkdir(parents=True)
    (tmp_path / "out" / "helpful" / "old.txt").write_text("old expert")
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="^out: .*helpful.*overwrit"):
        run_extract(*base_and_tuned, tmp_path)
    assert (tmp_path / "out" / "helpful" / "old.txt").read_text() == "old expert"
    run_extract(*base_and_tuned, tmp_path, overwrite=True)
    assert not (tmp_path / "out" / "helpful" / "old.txt").exists()
    assert (tmp_path / "out" / "helpful" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_unknown_hub_id_offline():
    with pytest.raises(CheckpointError, match="could not fetch"):
        resolve_model_dir("nobody/no-such-model")


@pytest.mark.parametrize(
    ("preference", "match"),
    [
        ("helpful=-0.5,harmless=1.5", "non-negative"),
        ("helpful=0,harmless=0", "positive"),
        ("0.2,0.3,0.5", "Expected 2 weights"),
        ("funny=1", "Unknown objective.*valid names: \\['helpful', 'harmless'\\]"),
        ("helpful=nan", "finite"),
    ],
)
def test_bad_preference(two_experts, tmp_path, preference, match):
    with pytest.raises(PreferenceError, match=match):
        merge(two_experts, preference, rank=2, out=tmp_path / "out", progress=False)
    assert no_output(tmp_path)


def test_unknown_merge_method(two_experts, tmp_path):
    with pytest.raises(ConfigError, match="^method: .*task_arithmetic"):
        merge(two_experts, "0.5,0.5", rank=2, out=tmp_path / "out", method="slerp", progress=False)
    assert no_output(tmp_path)


def test_cli_prints_one_line_and_exits_2(base_and_tuned, tmp_path):
    base, tuned = base_and_tuned
    cmd = [
        sys.executable,
        "-m",
        "hoe",
        "extract",
        "--base",
        str(base),
        "--tuned",
        f"helpful={tuned}",
        "--rank",
        "0",
        "--out",
        str(tmp_path / "out"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--rank: got 0" in proc.stderr and "Traceback" not in proc.stderr
    assert no_output(tmp_path)
