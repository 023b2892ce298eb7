"""What an evaluation writes for people: ``results.md`` (tables) and ``pareto.png`` (the fronts).

Both are made from ``results.json`` alone (:func:`markdown`, :func:`plot`), so they can be redrawn from it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hoe.io.atomic import atomic_file


def markdown(results: dict) -> str:
    """A summary table (one row per method) and one table of points per method."""
    objectives = results["objectives"]
    ref = ", ".join(f"{o}={v:g}" for o, v in results["reference_point"].items())
    cfg, boot, best = results["config"], results["bootstrap"], results["best_baseline"]
    lines = [
        f"# hoe evaluate: `{cfg['model']}`",
        "",
        f"Objectives {', '.join(objectives)} (all maximised); hypervolume reference point {ref}. "
        f"{results['prompts']['n']} prompts ({cfg['prompts']}) × {cfg['samples']} samples, "
        f"temperature {cfg['temperature']:g}, {cfg['max_new_tokens']} new tokens, seed {cfg['seed']}. "
        f"Intervals: {boot['level']:.0%} bootstrap over prompts ({boot['resamples']} resamples, the same for "
        f"every method). Best baseline (every method but hoe and hoe-lora): {best or 'none'}. "
        "Points in parentheses are copies of a point another method computes identically (same weights, same "
        "seeds); tokens/s counts the generated points only.",
        "",
        f"| method | points | hypervolume [CI] | HV / {best or 'best baseline'} [CI] | Tchebycheff | "
        f"controllability ({', '.join(objectives)}) | tokens/s | passes/token |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["methods"].items():
        rho = m["controllability"]
        lines.append(
            f"| {name} | {_count(m)} | {_num(m['hypervolume'])} {_ci(m['hypervolume_ci'])} | "
            f"{_num(m['hypervolume_ratio'], 3)} {_ci(m['hypervolume_ratio_ci'], 3)} | {_num(m['tchebycheff'])} | "
            f"{', '.join(_num(rho[o], 2) for o in objectives) if rho else '-'} | "
            f"{_num(m['tokens_per_second'], 1)} | {_num(m['forward_passes_per_token'], 2)} |"
        )
    lines += _versus(results["methods"])
    for name, m in results["methods"].items():
        lines += ["", f"## {name}", "", "| point | " + " | ".join(objectives) + " | Pareto |"]
        lines.append("|---" * (len(objectives) + 2) + "|")
        for p in m["points"]:
            cells = [f"{_num(p['mean'][o])} ± {_num(p['se'][o])}" for o in objectives]
            lines.append(
                f"| {point_name(p, objectives)}"
                + (f" (copy of {p['copied_from']})" if p.get("copied_from") else "")
                + " | "
                + " | ".join(cells)
                + f" | {'yes' if p['pareto'] else ''} |"
            )
    return "\n".join(lines) + "\n"


def _versus(methods: dict) -> list[str]:
    """HoE's (and hoe-lora's) hypervolume as a ratio to each other method's, with the paired interval."""
    rows = [(name, m["hypervolume_ratios"]) for name, m in methods.items() if m.get("hypervolume_ratios")]
    if not rows:
        return []
    others = list(rows[0][1])
    lines = [
        "",
        "HV ratio [CI] of each row to each column (above 1 with the whole interval: the row wins):",
        "",
    ]
    lines += ["| | " + " | ".join(others) + " |", "|---" * (len(others) + 1) + "|"]
    for name, ratios in rows:
        cells = [
            "" if other not in ratios else f"{_num(ratios[other]['ratio'], 3)} {_ci(ratios[other]['ci'], 3)}"
            for other in others
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _count(m: dict) -> str:
    copied = m.get("copied_points", 0)
    return f"{len(m['points'])} ({copied})" if copied else str(len(m["points"]))


def point_name(p: dict, objectives: list[str]) -> str:
    """``0.50/0.25/0.25`` for a preference, else the point's label (``base``, an objective's name)."""
    pref = p["preference"]
    if pref is None or p["label"] in objectives:
        return p["label"]
    return "/".join(f"{pref[o]:.2f}" for o in objectives)


def plot(results: dict, path: Path) -> None:
    """Mean reward vectors of every method, one colour each, on every pair of objectives (one panel for 2),
    each point labelled with its preference. The axes follow the points, not the reference point (far below
    them on smol3), which the title gives instead."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    objectives = results["objectives"]
    pairs = list(itertools.combinations(range(len(objectives)), 2))
    fig = Figure(figsize=(5.2 * len(pairs), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    markers = {"constant": "*", "vertices": "^", "grid": "o"}
    for ax, (a, b) in zip(axes, pairs):
        oa, ob = objectives[a], objectives[b]
        # drawn last to first, so that the first method (HoE) sits on top where a copy hides it otherwise
        for c, (name, m) in reversed(list(enumerate(results["methods"].items()))):
            xs = [p["mean"][oa] for p in m["points"]]
            ys = [p["mean"][ob] for p in m["points"]]
            size = 90 if m["kind"] == "constant" else 28
            ax.scatter(xs, ys, s=size, color=f"C{c}", marker=markers[m["kind"]], label=name, alpha=0.85)
            for p, x, y in zip(m["points"], xs, ys):
                ax.annotate(point_name(p, objectives), (x, y), fontsize=5, alpha=0.7, color=f"C{c}",
                            xytext=(2, 2), textcoords="offset points")  # fmt: skip
        ax.set_xlabel(oa)
        ax.set_ylabel(ob)
        ax.grid(alpha=0.3)
        ax.margins(0.1)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].legend(handles[::-1], labels[::-1], fontsize=7, loc="best")  # in the methods' order
    ref = ", ".join(f"{o}={v:g}" for o, v in results["reference_point"].items())
    fig.suptitle(
        f"Mean rewards, {results['prompts']['n']} prompts (hypervolume reference: {ref})", fontsize=9
    )
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=140, format="png")


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(ci: list | None, digits: int = 4) -> str:
    if ci is None:
        return ""
    return f"[{_num(ci[0], digits)}, {_num(ci[1], digits)}]"
