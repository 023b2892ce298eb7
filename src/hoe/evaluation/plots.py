"""The figures an evaluation writes, drawn from ``results.json`` alone (so they can be redrawn from it).

* ``pareto.png``: every method's mean reward vectors on each pair of objectives: a grid method's front
  between the two (its preferences on that edge of the simplex) joined as a line, its other points faint,
  HoE drawn on top, no text on the points (the legend names the methods); with two objectives this is the
  classic front; more than three objectives: parallel coordinates instead, one line per point;
* ``hypervolume.png``: each method's hypervolume with its bootstrap interval;
* ``simplex.png`` (three objectives): one ternary panel per objective and grid method, each λ of the lattice
  at its place in the triangle coloured by that objective's mean reward (one colour scale per objective), and
  beside them, for HoE (and HoE-LoRA) against the best baseline, at each λ which of the two points dominates
  the other (grey where neither does).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from hoe.io.atomic import atomic_file

ON_TOP = ("hoe", "hoe-lora")
"""Drawn last, over the baselines."""


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")


def _colours(results: dict) -> dict[str, str]:
    return {name: f"C{i}" for i, name in enumerate(results["methods"])}


def _drawing_order(results: dict) -> list[str]:
    names = list(results["methods"])
    return [n for n in names if n not in ON_TOP] + [n for n in ON_TOP if n in names][::-1]


def pareto(results: dict):
    """``pareto.png``'s figure: pairwise projections (two or three objectives) or parallel coordinates."""
    objectives = results["objectives"]
    if len(objectives) > 3:
        return _parallel(results)
    pairs = list(itertools.combinations(range(len(objectives)), 2))
    fig = _figure(4.6 * len(pairs), 4.4)
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    colour = _colours(results)
    markers = {"constant": "*", "vertices": "^", "grid": "o"}
    for ax, (a, b) in zip(axes, pairs):
        oa, ob = objectives[a], objectives[b]
        others = [o for k, o in enumerate(objectives) if k not in (a, b)]
        for z, name in enumerate(_drawing_order(results)):
            m = results["methods"][name]
            top = name in ON_TOP
            if m["kind"] == "grid":  # the front between oa and ob: λ on that edge of the simplex, joined
                edge = sorted(
                    (p for p in m["points"] if all(p["preference"][o] < 1e-9 for o in others)),
                    key=lambda p: p["preference"][oa],
                )
                inner = [p for p in m["points"] if p not in edge]
                ax.scatter([p["mean"][oa] for p in inner], [p["mean"][ob] for p in inner], s=10,
                           color=colour[name], alpha=0.35, edgecolors="none", zorder=2 * z)  # fmt: skip
                ax.plot([p["mean"][oa] for p in edge], [p["mean"][ob] for p in edge], color=colour[name],
                        lw=2.0 if top else 1.1, marker="o", ms=5 if top else 3.5, label=name,
                        zorder=2 * z + 1, alpha=0.95 if top else 0.75)  # fmt: skip
            else:
                ax.scatter([p["mean"][oa] for p in m["points"]], [p["mean"][ob] for p in m["points"]],
                           s=110 if m["kind"] == "constant" else 40, color=colour[name],
                           marker=markers[m["kind"]], label=name, zorder=2 * z + 1)  # fmt: skip
        ax.set_xlabel(f"{oa} (mean reward)")
        ax.set_ylabel(f"{ob} (mean reward)")
        ax.grid(alpha=0.25)
        ax.margins(0.06)
    handles, labels = axes[0].get_legend_handles_labels()
    order = [labels.index(n) for n in results["methods"] if n in labels]
    fig.legend(
        [handles[i] for i in order], [labels[i] for i in order], loc="outside right center", fontsize=8
    )
    fig.suptitle(
        _title(results, "Mean rewards: lines are each method's front between two objectives (λ on that edge of "
               "the simplex), faint dots its other preferences"),
        fontsize=9,
    )  # fmt: skip
    return fig


def _parallel(results: dict):
    objectives = results["objectives"]
    fig = _figure(1.6 * len(objectives) + 2.5, 4.4)
    ax = fig.subplots()
    colour = _colours(results)
    seen = set()
    for name in _drawing_order(results):
        for p in results["methods"][name]["points"]:
            ax.plot(range(len(objectives)), [p["mean"][o] for o in objectives], color=colour[name],
                    alpha=0.8 if name in ON_TOP else 0.4, lw=1.2 if name in ON_TOP else 0.8,
                    label=None if name in seen else name)  # fmt: skip
            seen.add(name)
    ax.set_xticks(range(len(objectives)), objectives)
    ax.set_ylabel("mean reward")
    ax.grid(alpha=0.25)
    fig.legend(loc="outside right center", fontsize=8)
    fig.suptitle(_title(results, "Each line is one preference's mean reward vector"), fontsize=9)
    return fig


def hypervolume(results: dict):
    """``hypervolume.png``'s figure: one bar per method, its bootstrap interval as an error bar."""
    names = list(results["methods"])
    colour = _colours(results)
    fig = _figure(max(5.0, 1.0 + 0.75 * len(names)), 3.8)
    ax = fig.subplots()
    for i, name in enumerate(names):
        m = results["methods"][name]
        lo, hi = m["hypervolume_ci"]
        hv = m["hypervolume"]
        ax.bar(i, hv, color=colour[name], alpha=0.85)
        # a percentile interval need not hold its point estimate (few resamples): no negative bar
        ax.errorbar(i, hv, yerr=[[max(hv - lo, 0.0)], [max(hi - hv, 0.0)]], color="black", capsize=4, lw=1)
        ax.annotate(f"{hv:.3f}", (i, hi), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("hypervolume")
    ax.grid(axis="y", alpha=0.25)
    level = results["bootstrap"]["level"]
    title = _title(results, f"Hypervolume per method, {level:.0%} bootstrap interval over prompts", width=80)
    fig.suptitle(title, fontsize=9)
    return fig


def _ternary_xy(lam: tuple[float, float, float]) -> tuple[float, float]:
    """λ on the simplex -> a point of the equilateral triangle with vertices e1 (0, 0), e2 (1, 0),
    e3 (1/2, √3/2)."""
    return lam[1] + lam[2] / 2, lam[2] * math.sqrt(3) / 2


def _triangle(ax, objectives: list[str]) -> None:
    corners = [(0, 0), (1, 0), (0.5, math.sqrt(3) / 2)]
    ax.plot(*zip(*corners, corners[0]), color="0.6", lw=0.8)
    offsets = [(-0.02, -0.07, "right"), (1.02, -0.07, "left"), (0.5, math.sqrt(3) / 2 + 0.04, "center")]
    for (x, y, ha), name in zip(offsets, objectives):
        ax.text(x, y, name, fontsize=7, ha=ha)
    ax.set_xlim(-0.25, 1.25)
    ax.set_ylim(-0.15, 1.0)
    ax.set_aspect("equal")
    ax.axis("off")


def simplex(results: dict):
    """``simplex.png``'s figure for three objectives (None otherwise)."""
    objectives = results["objectives"]
    grid = {n: m for n, m in results["methods"].items() if m["kind"] == "grid"}
    if len(objectives) != 3 or not grid:
        return None
    colour = _colours(results)
    fig = _figure(2.3 * (len(grid) + 1), 2.1 * len(objectives) + 0.3)
    axes = fig.subplots(len(objectives), len(grid) + 1, squeeze=False)
    for row, o in enumerate(objectives):
        values = [p["mean"][o] for m in grid.values() for p in m["points"]]
        lo, hi = min(values), max(values)
        for col, (name, m) in enumerate(grid.items()):
            ax = axes[row][col]
            _triangle(ax, objectives)
            xy = [_ternary_xy(tuple(p["preference"][k] for k in objectives)) for p in m["points"]]
            art = ax.scatter(*zip(*xy), c=[p["mean"][o] for p in m["points"]], cmap="viridis", vmin=lo, vmax=hi,
                             s=70, edgecolors="white", linewidths=0.4)  # fmt: skip
            if row == 0:
                ax.set_title(name, fontsize=9, color=colour[name])
        fig.colorbar(art, ax=axes[row][len(grid) - 1], shrink=0.8, label=f"{o} (mean)")
    best = results.get("best_baseline")
    mine = [n for n in ON_TOP if n in grid and best in grid][: len(objectives)]
    for row in range(len(objectives)):
        if row < len(mine):
            _versus(axes[row][len(grid)], grid[mine[row]], grid[best], mine[row], best, objectives, colour)
        else:
            axes[row][len(grid)].axis("off")
    fig.suptitle(_title(results, "Each objective's mean reward at each λ of the lattice"), fontsize=9)
    return fig


def _versus(ax, ours: dict, theirs: dict, name: str, other: str, objectives: list[str], colour) -> None:
    """At each λ both methods have, which point dominates the other (maximised objectives), grey if neither."""
    _triangle(ax, objectives)
    key = lambda p: tuple(round(p["preference"][k], 6) for k in objectives)  # noqa: E731
    theirs_at = {key(p): tuple(p["mean"][k] for k in objectives) for p in theirs["points"]}
    counts = {name: 0, other: 0, "neither": 0}
    for p in ours["points"]:
        if key(p) not in theirs_at:
            continue
        a, b = tuple(p["mean"][k] for k in objectives), theirs_at[key(p)]
        who = name if _dominates(a, b) else other if _dominates(b, a) else "neither"
        counts[who] += 1
        ax.scatter(*_ternary_xy(key(p)), s=70, color=colour.get(who, "0.75"), edgecolors="white")
    ax.set_title(f"{name} vs {other}: who dominates at λ", fontsize=8)
    for who, n in counts.items():
        ax.scatter([], [], color=colour.get(who, "0.75"), label=f"{who} ({n})", s=25)
    ax.legend(fontsize=6, loc="lower center", bbox_to_anchor=(0.5, -0.32), ncol=3, frameon=False)


def _dominates(a: tuple, b: tuple) -> bool:
    """``a`` is at least ``b`` on every objective and above it on one (objectives are maximised)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def _title(results: dict, what: str, width: int = 200) -> str:
    """The figure's title, wrapped at ``width`` characters (about 16 per inch of figure at size 9)."""
    import textwrap

    ref = ", ".join(f"{o}={v:g}" for o, v in results["reference_point"].items())
    return textwrap.fill(
        f"{what}. {results['prompts']['n']} prompts; hypervolume reference point {ref}", width
    )


FIGURES = {"pareto.png": pareto, "hypervolume.png": hypervolume, "simplex.png": simplex}
"""File name -> the function drawing its figure from results.json (None when it does not apply)."""


def write_all(results: dict, folder: Path) -> list[Path]:
    """Every figure that applies to ``results`` into ``folder``; returns the files written."""
    written = []
    for name, draw in FIGURES.items():
        fig = draw(results)
        if fig is not None:
            _save(fig, Path(folder) / name)
            written.append(Path(folder) / name)
    return written
