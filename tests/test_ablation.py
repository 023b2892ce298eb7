"""``hoe ablation``: compositions from finished evaluations, paired, on a tiny bundle end to end."""

from __future__ import annotations

import json

import pytest

from hoe import EvaluateConfig, evaluate
from hoe.cli import run
from hoe.errors import ConfigError
from hoe.evaluation.ablation import ablation, parse_row

from conftest import tiny_bundle

OBJECTIVES = ["helpful=py:tiny_lm:upper_share", "harmless=py:tiny_lm:mean_char_code"]
PROMPTS = ["hello there", "tell me a story", "what is up", "name a color"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """One tiny bundle (2 LoRA experts and a router at the midpoint) evaluated twice: seed 0 and seed 1."""
    root = tmp_path_factory.mktemp("ablation")
    _, _, bundle = tiny_bundle(root, routers={"mid": "0.5,0.5"})
    (root / "p.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    outs = {}
    for seed in (0, 1):
        outs[seed] = root / f"eval{seed}"
        evaluate(
            EvaluateConfig(
                model=str(bundle),
                out=str(outs[seed]),
                prompts=str(root / "p.jsonl"),
                grid=2,
                samples=2,
                max_new_tokens=6,
                reference_point="0,0",
                objective=OBJECTIVES,
                bootstrap=50,
                methods="hoe,hoe-lora",
                seed=seed,
            ),  # fmt: skip
            progress=False,
        )
    return outs


def test_ablation_end_to_end_matches_evaluate_and_pairs_rows(evaluated, tmp_path, capsys):
    ev = evaluated[0]
    out = tmp_path / "abl"
    code = run(["ablation", "--row", f"2 LoRA={ev}:hoe-lora", "--row", f"2 LoRA + router={ev}:hoe",
                "--out", str(out), "--reference-point", "0,0", "--bootstrap", "50"])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "| 2 LoRA + router |" in printed.out
    result = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().startswith("# Expert-composition ablation")
    evaluation = json.loads((ev / "results.json").read_text())["methods"]
    for label, method in (("2 LoRA", "hoe-lora"), ("2 LoRA + router", "hoe")):
        row = result["rows"][label]  # the same numbers hoe evaluate gives the method (same resamples)
        assert row["hypervolume"] == pytest.approx(evaluation[method]["hypervolume"], abs=1e-4)
        assert row["hypervolume_ci"] == pytest.approx(evaluation[method]["hypervolume_ci"], abs=1e-4)
    assert result["rows"]["2 LoRA"]["ratio"] == 1.0 and result["rows"]["2 LoRA"]["ratio_ci"] == [1.0, 1.0]
    ratio = evaluation["hoe"]["hypervolume_ratios"]["hoe-lora"]
    assert result["rows"]["2 LoRA + router"]["ratio"] == pytest.approx(ratio["ratio"], abs=1e-3)


def test_rows_of_other_protocols_or_bad_specs_are_refused(evaluated, tmp_path):
    with pytest.raises(ConfigError, match=r"^row: .*different settings \(seed\)"):
        ablation([f"a={evaluated[0]}:hoe", f"b={evaluated[1]}:hoe"], None, tmp_path / "x", "0,0", 20)
    with pytest.raises(ConfigError, match="^row: .*no finished points of 'rs'"):
        ablation([f"a={evaluated[0]}:rs"], None, tmp_path / "x", "0,0", 20)
    with pytest.raises(ConfigError, match="^row: got 'nolabel'"):
        parse_row("nolabel")
    with pytest.raises(ConfigError, match="^reference: got 'c'"):
        ablation([f"a={evaluated[0]}:hoe"], "c", tmp_path / "x", "0,0", 20)
    assert not (tmp_path / "x" / "results.json").exists()


def test_objective_names_of_named_and_built_in_specs():
    from hoe.evaluation.ablation import objective_names

    assert objective_names(["relevance", "helpful=py:tiny_lm:upper_share"]) == ["relevance", "helpful"]
