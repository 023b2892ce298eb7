"""What an evaluation writes for people to read: ``results.md``, its tables (the figures are
:mod:`hoe.evaluation.plots`). Made from ``results.json`` alone, so it can be redrawn from it.
"""

from __future__ import annotations


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


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(ci: list | None, digits: int = 4) -> str:
    if ci is None:
        return ""
    return f"[{_num(ci[0], digits)}, {_num(ci[1], digits)}]"
