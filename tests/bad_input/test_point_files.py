"""Edited point files of ``hoe evaluate`` (issue 24, item 5): a stored point is reused only if it holds what it
claims, its preference, one reward row per prompt and rewards its responses score; otherwise exit 2 naming
--out, and the folder is left as it was (before, rewards set to 5.0 took the hypervolume from 0.09 to 7.19)."""

from __future__ import annotations

import json
import shutil

import pytest

from bad_input.helpers import assert_refused, cli, snapshot

OBJECTIVES = ["helpful=py:tiny_lm:upper_share", "harmless=py:tiny_lm:mean_char_code"]


@pytest.fixture(scope="module")
def evaluated(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("points")
    (root / "p.jsonl").write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in ["hi", "tell me", "a b c"])
    )
    args = ["evaluate", "--model", tiny.bundle, "--prompts", root / "p.jsonl", "--grid", 1, "--samples", 2,
            "--max-new-tokens", 4, "--reference-point", "0,0", "--methods", "hoe-lora", "--bootstrap", 20,
            "--no-progress", *[a for o in OBJECTIVES for a in ("--objective", o)]]  # fmt: skip
    from hoe.cli import run

    assert run([str(a) for a in [*args, "--out", root / "eval"]]) == 0
    return root / "eval", args


def _edit(record: dict, how: str) -> None:
    if how == "rewards 5.0":
        record["rewards"] = [[[5.0] * len(r) for r in s] for s in record["rewards"]]
    elif how == "another preference":
        record["preference"] = record["preference"][::-1]
    elif how == "an edited response":
        record["responses"][0][0] += " (edited)"
    elif how == "NaN rewards":
        record["rewards"][0][0][0] = float("nan")
    elif how == "null rewards":
        record["rewards"] = None
    elif how == "a sample dropped":
        record["rewards"], record["responses"] = record["rewards"][:1], record["responses"][:1]
    elif how == "a prompt dropped":
        record["rewards"] = [s[:-1] for s in record["rewards"]]
        record["responses"] = [s[:-1] for s in record["responses"]]
    elif how == "no responses":
        del record["responses"]


@pytest.mark.parametrize("how", ["rewards 5.0", "another preference", "an edited response", "NaN rewards",
                                 "null rewards", "a sample dropped", "a prompt dropped", "no responses"])  # fmt: skip
def test_an_edited_point_is_refused_and_nothing_is_rewritten(evaluated, tmp_path, capsys, how):
    source, args = evaluated
    out = shutil.copytree(source, tmp_path / "eval")
    path = out / "points" / "hoe-lora" / "1.0000-0.0000.json"
    record = json.loads(path.read_text())
    _edit(record, how)
    path.write_text(json.dumps(record))
    before = snapshot(out)
    code, err = cli(capsys, *args, "--out", out)
    assert_refused(code, err, "--out: the stored point")
    assert "1.0000-0.0000.json" in err and "Delete that file" in err, err
    assert snapshot(out) == before


def test_an_untouched_folder_is_reused_as_it_is(evaluated, tmp_path, capsys):
    source, args = evaluated
    out = shutil.copytree(source, tmp_path / "eval")
    points = snapshot(out / "points")
    code, err = cli(capsys, *args, "--out", out)
    assert code == 0, err
    assert snapshot(out / "points") == points
