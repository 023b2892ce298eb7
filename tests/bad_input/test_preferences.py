"""Bad preference text, wherever a preference enters: `generate --preference`, `build --expert NAME=DIR@PREF`,
`build --router NAME@PREF` and `merge --preference`. Each is refused with exit 2, naming the flag and what was
wrong, and writes nothing (the bundle read is byte-identical, no output folder appears).

The bundle has two objectives (helpful, harmless), so a valid text needs two weights.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from hoe import HoEModel
from hoe.errors import PreferenceError
from hoe.preference import parse_preference_text, to_simplex

from bad_input.helpers import assert_refused, cli, snapshot

# (text, words the message must hold). Before this check "0.5,,0.5" read as [0.5, 0.5] (the empty item
# dropped) and "1_0,1" as [10, 1] (Python's underscore literal): both were accepted.
BAD = [
    ("0.5,,0.5", "item 2 of 3 is empty"),
    ("1_0,1", "'1_0', not a number"),
    ("-1,2", "non-negative"),
    ("nan,1", "finite"),
    ("0.2,0.3,0.5", "Expected 2 weights"),
    ("funny=1", "Unknown objective(s) ['funny']"),
    ("0,0", "positive"),
]


def experts_args(tiny) -> list[str]:
    return ["--expert", f"helpful={tiny.helpful}", "--expert", f"harmless={tiny.harmless}"]


@pytest.mark.parametrize(("text", "words"), BAD)
def test_generate(tiny, capsys, text, words):
    before = snapshot(tiny.bundle)
    code, err = cli(capsys, "generate", "--model", tiny.bundle, "--preference", text, "hi")
    assert_refused(code, err, "--preference")
    assert words in err, err
    assert snapshot(tiny.bundle) == before


@pytest.mark.parametrize(("text", "words"), BAD)
def test_build_expert_anchor(tiny, capsys, tmp_path, text, words):
    out = tmp_path / "out"
    args = ["build", "--base", tiny.base, *experts_args(tiny), "--expert", f"mid={tiny.helpful}@{text}"]
    code, err = cli(capsys, *args, "--out", out)
    assert_refused(code, err, "--expert")
    assert words in err and "'mid'" in err, err
    assert snapshot(out) is None


@pytest.mark.parametrize(("text", "words"), BAD)
def test_build_router_anchor(tiny, capsys, tmp_path, text, words):
    out = tmp_path / "out"
    code, err = cli(
        capsys, "build", "--base", tiny.base, *experts_args(tiny), "--router", f"r@{text}", "--out", out
    )
    assert_refused(code, err, "--router")
    assert words in err and "'r'" in err, err
    assert snapshot(out) is None


@pytest.mark.parametrize(("text", "words"), BAD)
def test_merge(tiny, capsys, tmp_path, text, words):
    out = tmp_path / "out"
    code, err = cli(capsys, "merge", *experts_args(tiny), "--preference", text, "--rank", "2", "--out", out)
    assert_refused(code, err, "--preference")
    assert words in err, err
    assert snapshot(out) is None


def test_existing_output_is_untouched(tiny, capsys, tmp_path):
    """A refused build leaves an existing --out byte-identical, even with --overwrite."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep me")
    before = snapshot(out)
    args = ["build", "--base", tiny.base, *experts_args(tiny), "--router", "r@0.5,,0.5", "--out", out]
    code, err = cli(capsys, *args, "--overwrite")
    assert_refused(code, err, "--router")
    assert snapshot(out) == before


# ----- library level ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.6,0.4", [0.6, 0.4]),
        (".5, 5e-1", [0.5, 0.5]),
        ("+1,2E0", [1.0, 2.0]),
        ("a=1, b=0", {"a": 1.0, "b": 0.0}),
    ],
)
def test_plain_numbers_parse(text, expected):
    assert parse_preference_text(text) == expected


@pytest.mark.parametrize("text", ["0.5,0.5,", ",1", "1_0", "0x1", "1.5.2", "a=", "=1", "a=1_0"])
def test_malformed_text_names_the_field(text):
    with pytest.raises(PreferenceError) as info:
        parse_preference_text(text)
    assert info.value.field == "preference" and info.value.value == text
    assert str(info.value).startswith("preference: ")


def test_mapping_values_must_be_numbers():
    with pytest.raises(PreferenceError, match="'1_0' is not a number"):
        to_simplex({"a": "1_0"}, ["a", "b"])
    assert to_simplex({"a": "0.25", "b": 0.75}, ["a", "b"]).tolist() == [0.25, 0.75]


@pytest.mark.parametrize("call", ["forward", "generate"])
def test_model_calls_need_a_preference(tiny, call):
    model = HoEModel.from_pretrained(tiny.bundle)
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(PreferenceError) as info:
        getattr(model, call)(input_ids=ids) if call == "forward" else model.generate(ids, preference=None)
    e = info.value
    assert e.field == "preference" and e.value is None
    assert "a preference is required" in str(e) and "['helpful', 'harmless']" in str(e)


# ----- overflow (issue 24, item 4): huge weights mean what they say, or are refused; never a silent zero -----
@pytest.mark.parametrize(
    ("pref", "expected"),
    [
        ("1e308,1e308", [0.5, 0.5]),  # the sum overflows to inf: it was (0, 0), i.e. no preference at all
        ("a=1e308,b=0", [1.0, 0.0]),
        ([1.7e308, 1.7e308], [0.5, 0.5]),
        ({"a": 1e308, "b": 3e307}, [1e308 / 1.3e308, 3e307 / 1.3e308]),
        ("5e-324,5e-324", [0.5, 0.5]),  # subnormal weights: still the direction they give
        (torch.tensor([1e308, 1e308], dtype=torch.float64), [0.5, 0.5]),
    ],
)
def test_huge_weights_keep_their_direction(pref, expected):
    lam = to_simplex(pref, ["a", "b"])
    assert lam.tolist() == pytest.approx(expected, rel=1e-12) and float(lam.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("pref", [[10**400, 1], {"a": 10**400, "b": 1}, "1e400,1"])
def test_weights_beyond_float_range_are_refused(pref):
    with pytest.raises(PreferenceError, match="^preference: got .*finite"):
        to_simplex(pref, ["a", "b"])


def test_generate_at_huge_weights_equals_the_same_direction(tiny, capsys):
    code, err = cli(capsys, "generate", "--model", tiny.bundle, "--preference", "1e308,1e308", "--seed", "3",
                    "--max-new-tokens", "4", "hi")  # fmt: skip
    huge = capsys.readouterr().out if code == 0 else err
    assert code == 0, err
    code, err = cli(capsys, "generate", "--model", tiny.bundle, "--preference", "0.5,0.5", "--seed", "3",
                    "--max-new-tokens", "4", "hi")  # fmt: skip
    assert code == 0 and capsys.readouterr().out == huge


def test_build_with_a_huge_anchor_loads(tiny, capsys, tmp_path):
    out, mid = tmp_path / "out", shutil.copytree(tiny.helpful, tmp_path / "mid")
    code, err = cli(capsys, "build", "--base", tiny.base, *experts_args(tiny),
                    "--expert", f"mid={mid}@1e308,1e308", "--out", out)  # fmt: skip
    assert code == 0, err
    model = HoEModel.from_pretrained(out)
    assert [e.anchor for e in model.experts][-1] == pytest.approx((0.5, 0.5))


def test_a_huge_lattice_is_refused_at_once():
    from hoe.preference import simplex_lattice

    with pytest.raises(PreferenceError, match="^grid: got 100000. The lattice would hold 5000150001"):
        simplex_lattice(3, 100000)
    assert simplex_lattice(3, 4).shape == (15, 3) and simplex_lattice(2, 1).tolist() == [[1, 0], [0, 1]]


def test_a_list_of_0d_tensors_is_a_preference():
    assert to_simplex(list(torch.tensor([0.25, 0.75])), ["a", "b"]).tolist() == [0.25, 0.75]
