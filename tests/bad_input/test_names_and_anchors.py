"""Names and anchors (issue 24, item 10): a router name that is no folder name is refused before training; two
experts at one anchor or one folder under two names are refused; a router at an expert's anchor is said."""

from __future__ import annotations

import shutil

import pytest

from bad_input.helpers import assert_refused, cli, snapshot

OBJECTIVES = ["--objective", "helpful=brevity", "--objective", "harmless=brevity"]


@pytest.mark.parametrize("name", ["../../evil", "a/b", ".hidden", "-x", "sp ace"])
def test_train_router_refuses_a_bad_name_before_loading(tiny, capsys, tmp_path, name):
    before = snapshot(tiny.baseless)
    code, err = cli(capsys, "train-router", "--model", tiny.baseless, "--anchor", "0.5,0.5", "--name", name,
                    *OBJECTIVES, "--out", tmp_path / "r")  # fmt: skip
    assert_refused(code, err, "--name")
    assert "--base" not in err and "not usable as a folder name" in err, err  # nothing was loaded
    assert snapshot(tiny.baseless) == before and not (tmp_path / "r").exists()


def test_two_experts_at_one_anchor_are_refused(tiny, capsys, tmp_path):
    a, b = (shutil.copytree(tiny.helpful, tmp_path / n) for n in ("m1", "m2"))
    code, err = cli(capsys, "build", "--base", tiny.base, "--expert", f"helpful={tiny.helpful}",
                    "--expert", f"harmless={tiny.harmless}", "--expert", f"m1={a}@0.5,0.5",
                    "--expert", f"m2={b}@1,1", "--out", tmp_path / "out")  # fmt: skip
    assert_refused(code, err, "--expert")
    assert "'m1' and 'm2' sit at the same anchor" in err and "'m2' weight 0" in err, err
    code, err = cli(capsys, "build", "--base", tiny.base, "--expert", f"helpful={tiny.helpful}",
                    "--expert", f"harmless={tiny.harmless}", "--expert", f"m1={a}@1,0", "--out", tmp_path / "out")  # fmt: skip
    assert_refused(code, err, "--expert")  # a merged expert at a single-objective expert's anchor
    assert "'helpful' and 'm1' sit at the same anchor" in err
    assert not (tmp_path / "out").exists()


def test_one_folder_under_two_names_is_refused(tiny, capsys, tmp_path):
    code, err = cli(capsys, "build", "--base", tiny.base, "--expert", f"helpful={tiny.helpful}",
                    "--expert", f"harmless={tiny.helpful}", "--out", tmp_path / "out")  # fmt: skip
    assert_refused(code, err, "--expert")
    assert "given as both 'helpful' and 'harmless'" in err and not (tmp_path / "out").exists()


def test_a_router_at_an_experts_anchor_is_said(tiny, capsys, tmp_path):
    code, err = cli(capsys, "build", "--base", tiny.base, "--expert", f"helpful={tiny.helpful}",
                    "--expert", f"harmless={tiny.harmless}", "--router", "r@1,0", "--out", tmp_path / "out")  # fmt: skip
    assert code == 0, err
    assert "router 'r' sits at the anchor of the LoRA expert 'helpful'" in err, err
