"""Numbers and options of `hoe extract` and `hoe merge`: every option is honoured or refused, before any work.

Each refusal exits 2 with one line naming the flag, and leaves the output folder, which already holds an
artifact and is passed with --overwrite (so that nothing but the bad option stands in the way), byte-identical.
"""

from __future__ import annotations

import pytest
import torch

from hoe import extract, merge
from hoe.errors import ConfigError
from hoe.io.adapters import read_adapter, read_record

from bad_input.helpers import assert_refused, cli, snapshot

TINY_LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture
def out(tmp_path):
    """An experts folder that already holds an expert `helpful` and a sibling, to be left as it is."""
    folder = tmp_path / "out"
    for name in ("helpful", "sibling"):
        (folder / name).mkdir(parents=True)
        (folder / name / "adapter_model.safetensors").write_bytes(f"previous {name}".encode())
    (folder / "README.md").write_text("previous bundle\n")
    return folder


def run_extract(capsys, inputs, out, *extra):
    args = ["extract", "--base", inputs["base"], "--tuned", f"helpful={inputs['adapter']}"]
    return cli(capsys, *args, "--out", out, "--overwrite", *extra)


def run_merge(capsys, inputs, out, *extra):
    experts = ["--expert", f"helpful={inputs['helpful']}", "--expert", f"harmless={inputs['harmless']}"]
    args = ["merge", *experts, "--preference", "0.5,0.5", "--rank", "4"]
    return cli(capsys, *args, "--out", out, "--overwrite", *extra)


@pytest.mark.parametrize(
    ("extra", "flag", "words"),
    [
        (["--method", "ties", "--density", "-1"], "--density", "(0, 1]"),  # was: an all-zero expert
        (["--method", "ties", "--density", "1.5"], "--density", "(0, 1]"),  # was: accepted
        (["--method", "ties", "--density", "nan"], "--density", "finite"),
        (["--method", "ties", "--density", "0"], "--density", "(0, 1]"),  # open at 0: nothing kept
        (["--density", "0.5"], "--density", "ties"),  # pcb (the default) has no density: say who has
        (["--method", "task_arithmetic", "--density", "0.5"], "--density", "ties"),
        (["--method", "ties", "--keep", "0.5"], "--keep", "pcb"),  # a pcb option given to ties
        (["--method", "pcb", "--keep", "0"], "--keep", "(0, 1]"),
        (["--method", "pcb", "--clip", "0.5"], "--clip", "[0, 0.5)"),  # half clipped at each end: nothing
        (["--method", "pcb", "--clip", "-0.1"], "--clip", "[0, 0.5)"),
        (["--method", "task_arithmetic", "--scale", "inf"], "--scale", "finite"),
        (["--method", "slerp"], "--method", "task_arithmetic"),
        (["--svd", "foo"], "--svd", "randomized"),
    ],
)
def test_merge_refuses_bad_options(capsys, inputs, out, extra, flag, words):
    before = snapshot(out.parent)
    code, err = run_merge(capsys, inputs, out, *extra)
    assert_refused(code, err, flag)
    assert words in err, err
    assert snapshot(out.parent) == before


def test_merge_records_resolved_options(capsys, inputs, tmp_path):
    code, err = run_merge(capsys, inputs, tmp_path / "m", "--method", "ties", "--density", "0.5")
    assert code == 0, err
    record = read_record(tmp_path / "m")
    assert record["method_options"] == {"density": 0.5, "scale": 1.0}  # scale: the declared default
    pcb = merge(
        {"helpful": inputs["helpful"], "harmless": inputs["harmless"]},
        "0.5,0.5",
        4,
        tmp_path / "p",
        progress=False,
    )
    assert read_record(pcb)["method_options"] == {"keep": 0.9, "clip": 0.01}


def test_library_error_words_the_field_its_own_way(inputs, tmp_path):
    experts = {"helpful": inputs["helpful"], "harmless": inputs["harmless"]}
    with pytest.raises(ConfigError) as caught:
        merge(experts, "0.5,0.5", 4, tmp_path / "m", method="ties", density=1.5, progress=False)
    e = caught.value
    assert (e.field, e.value) == ("density", 1.5)
    assert str(e).startswith("density: got 1.5") and "--" not in str(e)
    assert e.cli_message().startswith("--density: got 1.5")
    with pytest.raises(ConfigError) as caught:  # an option no method declares: refused, not ignored
        merge(experts, "0.5,0.5", 4, tmp_path / "m", method="ties", smoothing=0.1, progress=False)
    assert caught.value.field == "smoothing" and "no merge method takes it" in str(caught.value)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("extra", "flag", "words"),
    [
        (["--rank", "4", "--svd", "foo"], "--svd", "randomized"),  # was: accepted and recorded
        # was: a full SVD, recorded as randomized
        (["--rank", "0.9", "--svd", "randomized"], "--svd", "int rank"),
        (["--rank", "100"], "--rank", "rank <= 4 (the adapter's rank)"),  # was: "rank 100" with r = 4 written
        (["--rank", "5"], "--rank", "rank <= 4"),
        (["--rank", "4", "--targets", "k_proj"], "--targets", "'q_proj', 'v_proj'"),  # the adapter lacks it
        (["--rank", "4", "--targets", "nosuch_proj"], "--targets", "no such module"),
        # lm_head was reported as a missing base tensor
        (["--rank", "4", "--targets", "lm_head"], "--targets", "inside the transformer blocks"),
        (["--rank", "4", "--targets", "embed_tokens"], "--targets", "inside the transformer blocks"),
        (["--rank", "4", "--targets", "q_proj,norm"], "--targets", "inside the transformer blocks"),
        (["--rank", "4", "--sparsity", "nan"], "--sparsity", "[0, 1)"),
        (["--rank", "4", "--dtype", "float8"], "--dtype", "bfloat16"),
    ],
)
def test_extract_refuses_bad_options(capsys, inputs, out, extra, flag, words):
    before = snapshot(out.parent)
    code, err = run_extract(capsys, inputs, out, *extra)
    assert_refused(code, err, flag)
    assert words in err, err
    assert snapshot(out.parent) == before


def test_bad_targets_list_the_valid_names(capsys, inputs, out):
    code, err = run_extract(capsys, inputs, out, "--rank", "4", "--targets", "lm_head")
    assert_refused(code, err, "--targets")
    assert all(name in err for name in TINY_LLAMA_LINEARS), err
    assert "--base" not in err  # the old message blamed a missing base tensor


def test_targets_are_honoured_for_adapters(capsys, inputs, tmp_path):
    """The adapter adapts q_proj and v_proj; --targets q_proj must write q_proj only (it wrote both)."""
    code, err = run_extract(capsys, inputs, tmp_path / "e", "--rank", "4", "--targets", "q_proj")
    assert code == 0, err
    written = read_adapter(tmp_path / "e" / "helpful")
    assert sorted(written) == [f"model.layers.{i}.self_attn.q_proj" for i in range(2)]
    original = read_adapter(inputs["adapter"])
    for name, w in written.items():  # rank 4 = the adapter's rank: passed through unchanged
        torch.testing.assert_close(w.delta(), original[name].delta(), atol=1e-6, rtol=0)
    assert read_record(tmp_path / "e" / "helpful")["targets"] == ["q_proj"]


def test_rank_above_the_adapter_rank_is_allowed_with_sparsity(inputs, tmp_path):
    """With sparsity the sparsified delta is no longer rank 4, so rank 8 is honoured, not refused."""
    folder = extract(
        str(inputs["base"]),
        {"x": inputs["adapter"]},
        rank=8,
        out=tmp_path / "e",
        sparsity=0.5,
        progress=False,
    )["x"]
    assert {w.rank for w in read_adapter(folder).values()} == {8}


def test_help_names_the_builtin_base_and_the_density_range(capsys):
    from hoe.cli import run

    assert run(["extract", "--help"]) == 0
    assert "smollm2-135m-instruct" in " ".join(capsys.readouterr().out.split())
    assert run(["merge", "--help"]) == 0
    assert "(ties: (0, 1], default 0.2)" in " ".join(capsys.readouterr().out.split())
