"""The figures ``hoe evaluate`` writes, from a results.json alone: which files for how many objectives, and
that the dominance panel counts what it shows."""

from __future__ import annotations

import itertools

import pytest

from hoe.evaluation import plots


def results(m: int, grid: int = 2) -> dict:
    """A results.json-like dict: hoe slightly above rs everywhere, a base point, on the 1/grid lattice."""
    objectives = [f"o{i}" for i in range(m)]
    lattice = [c for c in itertools.product(range(grid + 1), repeat=m) if sum(c) == grid]
    prefs = [dict(zip(objectives, (x / grid for x in c))) for c in lattice]

    def points(shift: float) -> list[dict]:
        return [
            {
                "label": str(i),
                "preference": p,
                "mean": {o: p[o] + shift for o in objectives},
                "copied_from": None,
            }
            for i, p in enumerate(prefs)
        ]

    def method(kind, pts, hv):
        return {
            "kind": kind,
            "points": pts,
            "hypervolume": hv,
            "hypervolume_ci": [hv - 0.1, hv + 0.1],
        }

    return {
        "objectives": objectives,
        "reference_point": dict.fromkeys(objectives, 0.0),
        "prompts": {"n": 8},
        "bootstrap": {"level": 0.95},
        "best_baseline": "rs",
        "methods": {
            "hoe": method("grid", points(0.1), 1.2),
            "rs": method("grid", points(0.0), 1.0),
            "base": method(
                "constant",
                [{"label": "base", "preference": None, "mean": dict.fromkeys(objectives, 0.05)}],
                0.1,
            ),
        },
    }


@pytest.mark.parametrize(
    "m, files",
    [
        (2, {"pareto.png", "hypervolume.png"}),
        (3, {"pareto.png", "hypervolume.png", "simplex.png"}),
        (5, {"pareto.png", "hypervolume.png"}),
    ],
)
def test_the_figures_for_two_three_and_five_objectives(tmp_path, m, files):
    written = plots.write_all(results(m), tmp_path)
    assert {p.name for p in written} == files == {p.name for p in tmp_path.iterdir()}
    assert all(p.stat().st_size > 10_000 for p in written)  # a drawn PNG, not an empty canvas


@pytest.mark.parametrize("m", [2, 3, 5])
def test_no_figure_writes_text_per_point(m):
    """Points are named by the legend, never by a label each: the fronts and the bars carry no text on their
    axes but the bars' values (one per method), a triangle only its three corner names."""
    data = results(m)
    points = sum(len(x["points"]) for x in data["methods"].values())
    for name, draw in plots.FIGURES.items():
        fig = draw(data)
        if fig is None:
            continue
        for ax in fig.axes:
            allowed = {"pareto.png": 0, "hypervolume.png": len(data["methods"]), "simplex.png": 3}[name]
            assert len(ax.texts) <= allowed < points, (name, len(ax.texts))


def test_the_dominance_panel_counts_each_lambda_once(tmp_path, monkeypatch):
    """hoe is 0.1 above rs on every objective at every λ: it dominates at all 6 points of the 1/2 lattice."""
    seen = {}
    real = plots._versus

    def spy(ax, ours, theirs, name, other, objectives, colour):
        real(ax, ours, theirs, name, other, objectives, colour)
        seen[name] = [t.get_text() for t in ax.get_legend().get_texts()]

    monkeypatch.setattr(plots, "_versus", spy)
    assert plots.simplex(results(3)) is not None
    assert seen == {"hoe": ["hoe (6)", "rs (0)", "neither (0)"]}


def test_dominance_means_every_objective_at_least_and_one_above():
    assert plots._dominates((1, 2), (1, 1)) and not plots._dominates((1, 1), (1, 1))
    assert not plots._dominates((2, 0), (1, 1))
