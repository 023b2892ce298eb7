"""Router placement (hoe.training.placement) on reward tables built by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hoe.errors import ConfigError
from hoe.evaluation.metrics import hypervolume
from hoe.training.placement import best_mixture, place, place_from_results, read_placement

LAMS = np.array([[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]])
EXPERTS = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
NAMES = ["a", "b", "a-b"]
REF = np.zeros(2)
# LoRA-only: on the segment (1, 0)-(0.6, 0.6) at λ = (0.75, 0.25); far inside the hull at λ = (0.25, 0.75)
REWARDS = np.array([[1.0, 0.0], [0.8, 0.3], [0.6, 0.6], [0.1, 0.5], [0.0, 1.0]])


def test_best_mixture_by_hand():
    t, p = best_mixture(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.5, 0.5]), np.zeros(2))
    assert t == pytest.approx(1.0) and p.tolist() == pytest.approx([0.5, 0.5])
    # along (0.25, 0.75) between (0.6, 0.6) and (0, 1): p = (x, 3x) on the segment y = 1 - 2x/3 -> x = 3/11
    t, p = best_mixture(np.array([[0.6, 0.6], [0.0, 1.0]]), np.array([0.25, 0.75]), np.zeros(2))
    assert p.tolist() == pytest.approx([3 / 11, 9 / 11]) and t == pytest.approx(12 / 11)  # t = x / 0.25


def test_the_dent_is_picked_and_a_point_on_the_hull_adds_nothing():
    candidates, picks = place(LAMS, REWARDS, REF, EXPERTS, NAMES, routers=2)
    by_anchor = {tuple(c.anchor): c for c in candidates}
    assert set(by_anchor) == {(0.75, 0.25), (0.25, 0.75)}  # the lattice points without an expert
    assert by_anchor[(0.75, 0.25)].gain == pytest.approx(0.0, abs=1e-9)  # already on the convex front
    dent = by_anchor[(0.25, 0.75)]
    assert set(dent.experts) == {"b", "a-b"}  # its N = 2 nearest experts
    assert dent.reachable == pytest.approx([3 / 11, 9 / 11], abs=1e-6)
    # HV gained by moving (0.1, 0.5) to (3/11, 9/11) next to (0.6, 0.6), (0, 1), (0.8, 0.3), (1, 0)
    moved = REWARDS.copy()
    moved[3] = [3 / 11, 9 / 11]
    expected = hypervolume(torch.from_numpy(moved), torch.zeros(2)) - hypervolume(
        torch.from_numpy(REWARDS), torch.zeros(2)
    )
    assert dent.gain == pytest.approx(expected, abs=1e-6) and expected > 0.05
    # one pick: the other candidate adds nothing, so the greedy stops early
    assert [p["anchor"] for p in picks] == [[0.25, 0.75]] and "would add" in picks[0]["reason"]


def test_greedy_picks_the_dents_deepest_first_and_stops_when_none_is_left():
    lams = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                     [0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]], dtype=float)  # fmt: skip
    experts = lams[:6]
    rewards = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                        [0.55, 0.225, 0.225], [0.1, 0.1, 0.1], [0.2, 0.2, 0.2]], dtype=float)  # fmt: skip
    # (0.25, 0.5, 0.25) is the deepest dent, (0.25, 0.25, 0.5) the next; (0.5, 0.25, 0.25) is on the hull along
    # its ray: 0.1 e_1 + 0.45 (RP + RB) = (0.55, 0.225, 0.225), ratios to r = -0.1 all 1.3, the LP's optimum
    _, picks = place(lams, rewards, np.full(3, -0.1), experts, [str(i) for i in range(6)], routers=3)
    assert [p["anchor"] for p in picks] == [[0.25, 0.5, 0.25], [0.25, 0.25, 0.5]]


def _results(names, lams, rewards):
    return {
        "objectives": names,
        "reference_point": dict(zip(names, [0.0] * len(names))),
        "prompts": {"count": 3},
        "methods": {
            "hoe-lora": {
                "points": [
                    {"preference": dict(zip(names, lam)), "mean": dict(zip(names, r))}
                    for lam, r in zip(lams.tolist(), rewards.tolist())
                ]
            }
        },
    }


def test_place_from_results_names_the_picks_and_skips_existing_routers(tmp_path):
    names = ["x", "y"]
    manifest = {
        "objectives": names,
        "experts": [{"name": n, "anchor": dict(zip(names, a))} for n, a in zip(NAMES, EXPERTS.tolist())],
        "routers": [],
    }
    record = place_from_results(_results(names, LAMS, REWARDS), manifest, routers=1)
    assert record["chosen"][0]["name"] == "lattice-25-75" and record["format"] == "hoe-router-placement/1"
    (tmp_path / "p.json").write_text(json.dumps(record))
    assert read_placement(tmp_path / "p.json")["chosen"][0]["anchor"] == [0.25, 0.75]
    manifest["routers"] = [{"name": "r", "anchor": {"x": 0.25, "y": 0.75}}]
    assert place_from_results(_results(names, LAMS, REWARDS), manifest, routers=1)["chosen"] == []
    with pytest.raises(ConfigError, match="^results: "):
        place_from_results(_results(["p", "q"], LAMS, REWARDS), manifest, routers=1)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="^placement: "):
        read_placement(tmp_path / "bad.json")


def test_place_routers_cli_on_a_tiny_bundle(tmp_path, capsys):
    from hoe.cli import run

    from conftest import tiny_bundle

    _, _, bundle = tiny_bundle(tmp_path / "t")  # experts helpful, harmless at the vertices
    results = tmp_path / "eval" / "results.json"
    results.parent.mkdir()
    lams = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    results.write_text(
        json.dumps(_results(["helpful", "harmless"], lams, np.array([[1, 0], [0.2, 0.2], [0, 1.0]])))
    )
    out = tmp_path / "placement.json"
    code = run(["place-routers", "--model", str(bundle), "--results", str(results.parent), "--routers", "2",
                "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    record = json.loads(out.read_text())
    # (0.2, 0.2) at the midpoint, the mixture of the vertices reaches (0.5, 0.5): the one pick
    assert [p["name"] for p in record["chosen"]] == ["lattice-50-50"] and "lattice-50-50:" in printed.out
    assert record["chosen"][0]["experts"] == ["helpful", "harmless"]
    before = out.read_bytes()
    assert (
        run(["place-routers", "--model", str(bundle), "--results", str(results), "--out", str(results)]) == 2
    )
    assert (
        "--out: " in (err := capsys.readouterr().err)
        and "an input (results)" in err
        and out.read_bytes() == before
    )
    assert run(["place-routers", "--model", str(bundle), "--results", str(tmp_path / "nope.json"),
                "--out", str(tmp_path / "p2.json")]) == 2  # fmt: skip
    assert "--results: cannot read" in capsys.readouterr().err and not (tmp_path / "p2.json").exists()
