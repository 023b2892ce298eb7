"""An output that is, holds or lies inside an input is refused before anything loads, for every command, even
with --overwrite, and every input stays byte-identical (issue 24, item 3: `export --model B --out B
--overwrite` replaced the bundle with a plain checkpoint; `build --out E/relevance --overwrite` an adapter)."""

from __future__ import annotations

import shutil

import pytest

from bad_input.helpers import assert_refused, cli, snapshot


@pytest.fixture
def copies(tiny, tmp_path):
    """Private copies of the tiny inputs (a refused case must not be able to spoil the shared ones): the base,
    two adapters under E/ and a bundle B built from them, plus an evaluation folder F."""
    from hoe import build

    base = shutil.copytree(tiny.base, tmp_path / "base")
    e = tmp_path / "E"
    helpful = shutil.copytree(tiny.helpful, e / "helpful")
    harmless = shutil.copytree(tiny.harmless, e / "harmless")
    bundle = build(
        str(base), {"helpful": helpful, "harmless": harmless}, tmp_path / "B", routers={"r": "0.5,0.5"}
    )
    (tmp_path / "F" / "points" / "hoe").mkdir(parents=True)
    return {"base": base, "E": e, "helpful": helpful, "harmless": harmless, "B": bundle, "F": tmp_path / "F"}


def _experts(c) -> list[object]:
    return ["--expert", f"helpful={c['helpful']}", "--expert", f"harmless={c['harmless']}"]


CASES = {
    "export into the bundle": lambda c: (["export", "--model", c["B"], "--preference", "0.5,0.5"], c["B"]),
    "export inside the bundle": lambda c: (["export", "--model", c["B"], "--preference", "0.5,0.5"], c["B"] / "x"),
    "export over the bundle's folder": lambda c: (["export", "--model", c["B"], "--preference", "1,0"], c["B"].parent),
    "export over the base": lambda c: (["export", "--model", c["B"], "--preference", "1,0"], c["base"]),
    "build over an expert": lambda c: (["build", "--base", c["base"], *_experts(c)], c["helpful"]),
    "build over the experts' folder": lambda c: (["build", "--base", c["base"], *_experts(c)], c["E"]),
    "build into the base": lambda c: (["build", "--base", c["base"], *_experts(c)], c["base"] / "bundle"),
    "merge over an expert": lambda c: (["merge", *_experts(c), "--preference", "0.5,0.5", "--rank", 2], c["harmless"]),
    "extract over its adapter": lambda c: (["extract", "--base", c["base"], "--tuned", f"helpful={c['helpful']}",
                                            "--rank", 2, "--no-progress"], c["E"]),  # writes E/helpful
    "save-router over the bundle": lambda c: (["save-router", "--model", c["B"], "--name", "r"], c["B"]),
    "evaluate into the bundle": lambda c: (["evaluate", "--model", c["B"], "--methods", "hoe-lora",
                                            "--reference-point", "0,0", "--objective", "helpful=brevity",
                                            "--objective", "harmless=brevity"], c["B"] / "eval"),
    "train-router inside the bundle": lambda c: (["train-router", "--model", c["B"], "--anchor", "0.3,0.7",
                                                  "--objective", "helpful=brevity", "--objective", "harmless=brevity"],
                                                 c["B"] / "r2"),
    "ablation over its row": lambda c: (["ablation", "--row", f"a={c['F']}:hoe"], c["F"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_on_an_input_is_refused_and_the_inputs_are_untouched(copies, capsys, case):
    args, out = CASES[case](copies)
    before = {k: snapshot(v) for k, v in copies.items()}
    code, err = cli(capsys, *args, "--out", out, *(["--overwrite"] if args[0] not in ("ablation",) else []))
    assert_refused(code, err, "--out: ")
    assert "an input (" in err and "never modified" in err, err
    assert {k: snapshot(v) for k, v in copies.items()} == before
