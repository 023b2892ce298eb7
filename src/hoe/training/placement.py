"""Where router experts should go: anchors scored by the front a router could add there (issue 22, METHOD.md §9:
"how many experts to place and where is open").

Input: HoE without routers (``hoe-lora``) measured on *train* prompts at every point λ_j of a lattice, its mean
reward vectors Y (k, m), and the hypervolume reference point r. A router at a candidate anchor c mixes the LoRA
experts nearest to c (:func:`hoe.model.router.nearest_experts`), token by token and prompt by prompt; mixing
whole responses alone already reaches any convex combination of what those experts' mixtures reach. So the
point a router at c can be expected to reach is the best such combination along c's direction:

    t_c = max_{w ∈ Δ} min_{i: c_i > 0} (Σ_q w_q Y_q - r)_i / c_i,    over the lattice points q in the hull of
                                                                      the router's experts' anchors      (LP)

a linear programme (maximise t subject to Σ_q w_q (Y_qi - r_i) ≥ c_i t), solved by scipy's HiGHS. The point
p_c = Σ_q w*_q Y_q is where the router could take the front at c, and the candidate's score is the hypervolume
that moving LoRA-only's point there adds:

    gain_c = HV(Y with row c replaced by p_c) - HV(Y)

zero where LoRA-only already lies on the convex front (no router can add there by mixing), large at a dent.
K routers are picked greedily: the best candidate, then its row is taken as reached (Y_c ← p_c) and the others
are scored again, so two routers do not claim the same dent. Candidates are the lattice points that hold no
LoRA expert and no router (a router reaches a lattice point of the evaluation only at its own anchor, since
preference routing is exact at anchors).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hoe.errors import ConfigError
from hoe.evaluation.metrics import hypervolume
from hoe.model.router import nearest_experts

FORMAT = "hoe-router-placement/1"


@dataclass
class Candidate:
    anchor: list[float]  # c (m,)
    lora_only: list[float]  # Y_c, HoE without routers at c
    reachable: list[float]  # p_c, the best mixture of its experts' points along c (LP)
    experts: list[str]  # the LoRA experts a router at c mixes
    ratio_gap: float  # t_c - min_i (Y_ci - r_i) / c_i: how far p_c lies beyond Y_c along c
    gain: float  # gain_c, the hypervolume p_c adds over Y


def best_mixture(points: np.ndarray, direction: np.ndarray, ref: np.ndarray) -> tuple[float, np.ndarray]:
    """(LP): the convex combination of ``points`` (q, m) that goes furthest from ``ref`` along ``direction``
    (m,), measured as ``min_{i: d_i > 0} (p_i - r_i) / d_i``. Returns (t, p) with p (m,).

    E.g. points (1, 0) and (0, 1), r = 0, d = (0.5, 0.5): the midpoint (0.5, 0.5), t = 1.
    """
    from scipy.optimize import linprog  # a maintained LP solver (HiGHS) rather than one written here

    q, m = points.shape
    support = direction > 0
    # variables (w_1..w_q, t): maximise t  <=>  minimise -t
    cost = np.zeros(q + 1)
    cost[-1] = -1.0
    # c_i t - Σ_q w_q (Y_qi - r_i) <= 0 on the support
    upper = np.hstack([-(points - ref).T[support], direction[support, None]])
    equal = np.hstack([np.ones((1, q)), np.zeros((1, 1))])
    bounds = [(0, None)] * q + [(None, None)]
    res = linprog(cost, A_ub=upper, b_ub=np.zeros(int(support.sum())), A_eq=equal, b_eq=[1.0], bounds=bounds)
    if not res.success:  # cannot happen for a non-empty point set: w = e_1 is feasible and t is bounded
        raise RuntimeError(f"the placement LP failed: {res.message}")
    w = res.x[:q]
    return float(res.x[-1]), w @ points


def in_hull(point: np.ndarray, corners: np.ndarray) -> bool:
    """Whether ``point`` (m,) is a convex combination of ``corners`` (e, m) (to 1e-9), by NNLS."""
    from scipy.optimize import nnls

    a = np.vstack([corners.T, np.ones((1, len(corners)))])
    b = np.append(point, 1.0)
    w, residual = nnls(a, b)
    return residual < 1e-9


def score_candidates(
    lams: np.ndarray,
    rewards: np.ndarray,
    ref: np.ndarray,
    expert_anchors: np.ndarray,
    expert_names: list[str],
    taken: np.ndarray,
) -> list[Candidate]:
    """A :class:`Candidate` for every lattice point λ_j (rows of ``lams`` (k, m), rewards (k, m)) that is no
    row of ``taken`` (anchors that hold an expert or a router already)."""
    out = []
    for j, c in enumerate(lams):
        if len(taken) and np.abs(taken - c).max(-1).min() < 1e-9:
            continue
        active = nearest_experts(torch.from_numpy(c), torch.from_numpy(expert_anchors), lams.shape[1]).numpy()
        corners = expert_anchors[active]
        reach = np.array([in_hull(lam, corners) for lam in lams])
        t, p = best_mixture(rewards[reach], c, ref)
        support = c > 0
        own = float(((rewards[j] - ref)[support] / c[support]).min())
        moved = rewards.copy()
        moved[j] = p
        gain = _hv(moved, ref) - _hv(rewards, ref)
        out.append(
            Candidate(
                anchor=[round(float(v), 6) for v in c],
                lora_only=[round(float(v), 6) for v in rewards[j]],
                reachable=[round(float(v), 6) for v in p],
                experts=[n for n, a in zip(expert_names, active) if a],
                ratio_gap=round(t - own, 6),
                gain=round(max(gain, 0.0), 6),
            )
        )
    return out


def _hv(rewards: np.ndarray, ref: np.ndarray) -> float:
    return hypervolume(torch.from_numpy(rewards), torch.from_numpy(ref))


def place(
    lams: np.ndarray,
    rewards: np.ndarray,
    ref: np.ndarray,
    expert_anchors: np.ndarray,
    expert_names: list[str],
    routers: int,
    taken: np.ndarray | None = None,
) -> tuple[list[Candidate], list[dict]]:
    """Greedy placement of ``routers`` anchors. Returns (every candidate as first scored, the picks in order,
    each ``{"anchor", "gain", "reason"}``); picks stop early when no candidate adds hypervolume."""
    taken = np.concatenate([expert_anchors, taken if taken is not None else np.zeros((0, lams.shape[1]))])
    rewards = rewards.astype(np.float64).copy()
    first = score_candidates(lams, rewards, ref, expert_anchors, expert_names, taken)
    picks: list[dict] = []
    for rank in range(routers):
        scored = score_candidates(lams, rewards, ref, expert_anchors, expert_names, taken)
        if not scored or max(c.gain for c in scored) <= 0:
            break
        best = max(scored, key=lambda c: c.gain)
        anchor = np.array(best.anchor)
        j = int(np.abs(lams - anchor).max(-1).argmin())
        picks.append(
            {
                "anchor": best.anchor,
                "experts": best.experts,
                "gain": best.gain,
                "reason": (
                    f"pick {rank + 1} of {routers}: HoE-LoRA reaches {best.lora_only} here, a mixture of its "
                    f"experts' points reaches {best.reachable} along this direction "
                    f"(+{best.ratio_gap:.4f} in (y - r) / λ), which would add {best.gain:.5f} hypervolume "
                    f"({best.gain / max(_hv(rewards, ref), 1e-12):.1%}), the most of the "
                    f"{len(scored)} candidates left"
                ),
            }
        )
        rewards[j] = np.array(best.reachable)
        taken = np.concatenate([taken, anchor[None]])
    return first, picks


def place_from_results(results: dict, manifest: dict, routers: int) -> dict:
    """The placement record from ``hoe evaluate``'s ``results.json`` (with a ``hoe-lora`` lattice, on train
    prompts) and the bundle's manifest: what ``hoe place-routers`` writes."""
    names = manifest["objectives"]
    if results.get("objectives") != names:
        raise ConfigError(
            f"the results are for objectives {results.get('objectives')}, the bundle's are {names}.",
            field="results",
            fix="Evaluate this bundle: hoe evaluate --methods hoe-lora --prompts smol:train ...",
        )
    points = results.get("methods", {}).get("hoe-lora", {}).get("points", [])
    if len(points) < 2:
        raise ConfigError(
            "has no hoe-lora lattice.",
            field="results",
            fix="Evaluate with --methods hoe-lora on train prompts (e.g. --grid 4).",
        )
    lams = np.array([[p["preference"][n] for n in names] for p in points], dtype=np.float64)
    rewards = np.array([[p["mean"][n] for n in names] for p in points], dtype=np.float64)
    ref = np.array([results["reference_point"][n] for n in names], dtype=np.float64)
    experts = manifest["experts"]
    anchors = np.array([_on_simplex([e["anchor"].get(n, 0.0) for n in names]) for e in experts])
    existing = np.array(
        [_on_simplex([r["anchor"].get(n, 0.0) for n in names]) for r in manifest.get("routers", [])]
    ).reshape(-1, len(names))
    candidates, picks = place(lams, rewards, ref, anchors, [e["name"] for e in experts], routers, existing)
    for pick in picks:
        pick["name"] = "lattice-" + "-".join(f"{round(100 * v)}" for v in pick["anchor"])
    return {
        "format": FORMAT,
        "objectives": names,
        "reference_point": dict(zip(names, ref.tolist())),
        "prompts": results.get("prompts"),
        "hypervolume": _hv(rewards, ref),
        "routers": routers,
        "chosen": picks,
        "candidates": [asdict(c) for c in sorted(candidates, key=lambda c: -c.gain)],
    }


def _on_simplex(values: list[float]) -> list[float]:
    total = sum(values)
    return [v / total for v in values]


def _read_json(path: Path, field: str, fix: str) -> dict:
    """A JSON object from ``path``; anything else (unreadable, not JSON, not an object) is a ConfigError."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot read {str(path)!r} ({e}).", field=field, value=str(path), fix=fix
        ) from None
    if not isinstance(record, dict):
        raise ConfigError(f"{str(path)!r} holds no JSON object.", field=field, value=str(path), fix=fix)
    return record


def read_placement(path: str | Path) -> dict:
    """A placement record, checked enough to use (``format`` and ``chosen``); errors name ``placement``."""
    fix = "Pass the placement.json that hoe place-routers wrote."
    record = _read_json(Path(path), "placement", fix)
    if record.get("format") != FORMAT or not isinstance(record.get("chosen"), list):
        raise ConfigError(
            f"{str(path)!r} is not a router placement ({FORMAT}).",
            field="placement",
            value=str(path),
            fix=fix,
        )
    return record


def place_routers(results: str | Path, model: str | Path, routers: int, out: str | Path) -> dict:
    """``hoe place-routers``: read ``results`` (``hoe evaluate``'s results.json) and the bundle's manifest,
    place ``routers`` anchors, write the record to ``out`` (whole or not at all) and return it."""
    from hoe.bundle.folder import read_manifest
    from hoe.io.atomic import atomic_file, output_path, refuse_inputs

    if not isinstance(routers, int) or isinstance(routers, bool) or routers < 1:
        raise ConfigError(f"got {routers!r}.", field="routers", value=routers, fix="Pass at least 1.")
    manifest = read_manifest(model)
    path = Path(results)
    if path.is_dir():
        path = path / "results.json"
    fix = "Pass the results.json (or its folder) of hoe evaluate --methods hoe-lora on train prompts."
    data = _read_json(path, "results", fix)
    refuse_inputs(out, {"results": [results, path], "model": model})
    target = output_path(out, "out", replaced=False)
    record = place_from_results(data, manifest, routers)
    record["results"] = str(path.resolve())
    record["model"] = str(Path(model).resolve())
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return record


def next_anchor(placement: dict, manifest: dict) -> dict:
    """The first pick of ``placement`` that the bundle has no router at (so ``--anchor auto`` on each new bundle
    walks the picks in order); errors name ``anchor``."""
    names = manifest["objectives"]
    if placement.get("objectives") != names:
        raise ConfigError(
            f"the placement is for objectives {placement.get('objectives')}, the bundle's are {names}.",
            field="placement",
            fix="Place routers for this bundle: hoe place-routers --model BUNDLE ...",
        )
    have = [_on_simplex([r["anchor"].get(n, 0.0) for n in names]) for r in manifest.get("routers", [])]
    for pick in placement["chosen"]:
        if not any(max(abs(a - b) for a, b in zip(pick["anchor"], h)) < 1e-6 for h in have):
            return pick
    raise ConfigError(
        f"every anchor the placement chose ({[p['anchor'] for p in placement['chosen']]}) has a router already.",
        field="anchor",
        value="auto",
        fix="Pass an anchor, or place more routers (hoe place-routers --routers K).",
    )


def nth_anchor(placement: dict, spec: str) -> dict:
    """``auto:K`` -> the K-th pick (1-based) of ``placement``; errors name ``anchor``."""
    text = spec.partition(":")[2]
    picks = placement["chosen"]
    k = int(text) if text.isdigit() else 0
    if not 1 <= k <= len(picks):
        raise ConfigError(
            f"got {spec!r}, and the placement chose {len(picks)} anchor(s).",
            field="anchor",
            value=spec,
            fix=f"Write auto (the next free pick) or auto:K with K from 1 to {len(picks)}.",
        )
    return picks[k - 1]
