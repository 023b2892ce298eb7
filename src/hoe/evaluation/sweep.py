"""The sweep over (method, λ) points: generate, score, store each point as it finishes, resume from them.

Point j of a method is ``samples`` responses to each of the n prompts, sample s of prompt i seeded
``seed + s·n + i`` for every method (:func:`hoe.evaluation.paired.seeded_batches`), scored into a reward tensor
(S, n, m). It is written, atomically, to ``OUT/points/<method>/<label>.json`` with the settings it was made
with (its ``key``: prompts, decoding, seed, objectives and the models the method uses). A later sweep loads a
finished point instead of recomputing it, and refuses one whose key differs from its own (unless allowed to
redo such points), so results made with other settings are never mixed in.

Two methods can compute the same thing at a point: HoE where no router is reached is HoE without routers,
and at a vertex the linear soup is that LoRA expert, and RS and MOD are that tuned model
(:meth:`Method.computes`). With ``reuse`` the sweep then copies the point it has (its responses and rewards:
the same model and seeds give the same ones) instead of generating it again; the copy records
``copied_from`` and no decoding time, so that tokens/s counts only what was generated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hoe.errors import ConfigError, raise_all
from hoe.evaluation.methods import Method
from hoe.evaluation.paired import seeded_batches
from hoe.io.atomic import atomic_file, note
from hoe.objectives import score_matrix

POINT_FORMAT = "hoe-evaluation-point/1"
_FIELDS = {"base": "model", "experts": "model", "routers": "model"}
"""The option to change for a key that is not one itself (the base model comes with the bundle)."""


@dataclass
class Point:
    """One (method, λ) point: rewards (S, n, m), responses [S][n], and what it cost."""

    method: str
    label: str
    preference: list[float] | None
    rewards: torch.Tensor
    responses: list[list[str]]
    tokens: int
    seconds: float  # decoding time
    setup_seconds: float  # e.g. merging the weights at λ
    forward_passes_per_token: int
    copied_from: str | None = None  # "method/label" of the point whose responses this one reuses

    def per_prompt(self) -> torch.Tensor:
        """(n, m): each prompt's rewards averaged over its samples."""
        return self.rewards.double().mean(0)


@dataclass(frozen=True)
class Plan:
    """What to sweep: (method name, label, λ) points, the settings shared by all, and each method's key."""

    points: list[tuple[str, str, torch.Tensor | None]]
    keys: dict[str, dict]  # method -> the settings its numbers depend on
    samples: int
    seed: int
    batch_size: int
    reuse: bool = True  # copy a point that another method computes identically (Method.computes)


def shard_points(plan: Plan, methods: dict[str, Method], index: int, count: int) -> list:
    """Shard ``index`` of ``count``'s points of ``plan``, for one process of a sharded sweep.

    Points that compute the same thing (:meth:`Method.computes`, with ``reuse``) stay together, so that one
    process generates it once and copies it for the others, as a single process would; those groups, in plan
    order, are dealt to the shards in turn. Every point belongs to exactly one shard.
    """
    groups: dict[object, list[int]] = {}
    for j, (name, _, lam) in enumerate(plan.points):
        same = methods[name].computes(lam) if plan.reuse else None
        groups.setdefault(("point", j) if same is None else (same, _settings(plan.keys[name])), []).append(j)
    mine = {j for g, group in enumerate(groups.values()) if g % count == index for j in group}
    return [p for j, p in enumerate(plan.points) if j in mine]  # in plan order: each method's points together


def point_file(out: Path, method: str, label: str) -> Path:
    return out / "points" / method / f"{label}.json"


def load_finished(plan: Plan, out: Path, redo_changed: bool = False) -> dict[tuple[str, str], Point]:
    """The finished points of ``plan`` stored under ``out``. Points made with other settings raise
    :class:`ConfigError` naming each setting that differs, or are left out (to be redone) with ``redo_changed``."""
    done, refused = {}, {}
    for method, label, _ in plan.points:
        path = point_file(out, method, label)
        if not path.is_file():
            continue
        record = _read(path)
        changed = _differences(record.get("key", {}), plan.keys[method])
        if not changed:
            done[(method, label)] = _from_record(record, path, plan.samples)
        elif not redo_changed:
            for field, old, new in changed:
                refused.setdefault(_FIELDS.get(field, field), (method, old, new))
    raise_all(
        [
            ConfigError(
                f"{str(out)!r} holds {method} results made with other settings ({field} was {old!r}, now {new!r}).",
                field=field,
                value=new,
                fix="Pass another out folder, or allow overwriting (points made with other settings are redone).",
            )
            for field, (method, old, new) in refused.items()
        ]
    )
    return done


def _read(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"cannot read the stored point {str(path)!r} ({e}).",
            field="out",
            value=str(path.parents[2]),
            fix="Delete that file (it is recomputed), or pass another out folder.",
        ) from None
    if record.get("format") != POINT_FORMAT:
        raise ConfigError(
            f"{str(path)!r} is not a point of hoe evaluate.",
            field="out",
            value=str(path.parents[2]),
            fix="Pass another out folder.",
        )
    return record


def _differences(old: dict, new: dict) -> list[tuple[str, object, object]]:
    return [(f, old.get(f), new.get(f)) for f in sorted(set(old) | set(new)) if old.get(f) != new.get(f)]


def run_sweep(
    plan: Plan,
    methods: dict[str, Method],
    prompts: Sequence[str],
    objectives: Sequence,
    out: Path,
    done: dict[tuple[str, str], Point],
    progress: bool = True,
    on_method_done=None,
) -> dict[str, list[Point]]:
    """Every point of ``plan``, from ``done`` or computed (and stored), grouped by method in plan order.
    ``on_method_done(name)`` runs after a method's last point (to free its models)."""
    results: dict[str, list[Point]] = {name: [] for name, _, _ in plan.points}
    bar = tqdm(total=len(plan.points), desc="evaluate", unit="point", disable=not progress)
    try:
        _sweep(plan, methods, prompts, objectives, out, done, bar, results, on_method_done)
    except BaseException as e:
        finished = sum(point_file(out, m, label).is_file() for m, label, _ in plan.points)
        note(
            e,
            f"{finished} of {len(plan.points)} points are stored in {str(out)!r}; the same command resumes.",
        )
        raise
    finally:
        bar.close()
    return results


def _sweep(plan, methods, prompts, objectives, out, done, bar, results, on_method_done) -> None:
    def identity(name, lam) -> tuple | None:
        same = methods[name].computes(lam) if plan.reuse else None
        return None if same is None else (same, _settings(plan.keys[name]))

    computed: dict[tuple, Point] = {}  # (what a point computes, its settings) -> a point that has it
    for name, label, lam in plan.points if plan.reuse else ():
        if (name, label) in done and (key := identity(name, lam)) is not None:
            computed.setdefault(key, done[(name, label)])
    for j, (name, label, lam) in enumerate(plan.points):
        bar.set_postfix_str(f"{name} {label}")
        point = done.get((name, label))
        key = identity(name, lam) if point is None else None
        if point is None:
            if key in computed:
                point = copy_point(computed[key], name, label, lam, methods[name])
            else:
                point = compute_point(methods[name], name, label, lam, prompts, objectives, plan)
            store_point(out, point, plan.keys[name])
            if key is not None:
                computed.setdefault(key, point)
        results[name].append(point)
        bar.update()
        last = j + 1 == len(plan.points) or plan.points[j + 1][0] != name
        if last and on_method_done is not None:
            on_method_done(name)


def compute_point(
    method: Method,
    name: str,
    label: str,
    lam: torch.Tensor | None,
    prompts: Sequence[str],
    objectives: Sequence,
    plan: Plan,
) -> Point:
    n, m = len(prompts), len(objectives)
    rewards = torch.zeros(plan.samples, n, m, dtype=torch.float32)  # (S, n, m)
    start = time.perf_counter()
    method.prepare(lam)
    setup, seconds, tokens = time.perf_counter() - start, 0.0, 0
    responses: list[list[str]] = [[] for _ in range(plan.samples)]
    for s, rows, seeds in seeded_batches(n, plan.samples, plan.batch_size, plan.seed):
        chunk = [prompts[i] for i in rows]
        t0 = time.perf_counter()
        out = method.generate(chunk, lam, seeds)
        seconds += time.perf_counter() - t0
        tokens += out.tokens
        rewards[s, rows.start : rows.stop] = score_matrix(objectives, chunk, out.texts)
        responses[s] += out.texts
    preference = None if lam is None else [float(x) for x in lam]
    passes = method.forward_passes_per_token(lam)
    return Point(name, label, preference, rewards, responses, tokens, seconds, setup, passes)


def _settings(key: dict) -> str:
    """What a point computing ``Method.computes`` depends on: its key but the routers (none is used)."""
    return json.dumps({k: v for k, v in key.items() if k != "routers"}, sort_keys=True)


def copy_point(source: Point, name: str, label: str, lam: torch.Tensor | None, method: Method) -> Point:
    """``source``'s responses and rewards as the point (name, label), which computes the same."""
    preference = None if lam is None else [float(x) for x in lam]
    passes = method.forward_passes_per_token(lam)
    origin = f"{source.method}/{source.label}"  # itself perhaps a copy: its file says of what
    return Point(
        name, label, preference, source.rewards.clone(), source.responses, 0, 0.0, 0.0, passes, origin
    )


def store_point(out: Path, point: Point, key: dict) -> None:
    path = point_file(out, point.method, point.label)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "format": POINT_FORMAT,
        "method": point.method,
        "label": point.label,
        "preference": point.preference,
        "key": key,
        "rewards": point.rewards.tolist(),
        "responses": point.responses,
        "tokens": point.tokens,
        "seconds": point.seconds,
        "setup_seconds": point.setup_seconds,
        "forward_passes_per_token": point.forward_passes_per_token,
        "copied_from": point.copied_from,
    }
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")


def _from_record(r: dict, path: Path, samples: int) -> Point:
    """A stored point, its fields checked (types, shapes, finite rewards): a malformed file is a clear error."""

    def bad(what: str) -> ConfigError:
        return ConfigError(
            f"the stored point {str(path)!r} {what}.",
            field="out",
            value=str(path.parents[2]),
            fix="Delete that file (it is recomputed), or pass another out folder.",
        )

    try:
        rewards = torch.tensor(r["rewards"], dtype=torch.float32)
        responses = r["responses"]
        point = Point(
            r["method"], r["label"], r["preference"], rewards, responses, int(r["tokens"]), float(r["seconds"]),
            float(r["setup_seconds"]), int(r["forward_passes_per_token"]), r.get("copied_from"),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise bad(f"is malformed ({type(e).__name__}: {e})") from None
    pref = r.get("preference")
    if pref is not None and not (
        isinstance(pref, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pref)
    ):
        raise bad(f"holds the preference {pref!r}, not a list of numbers")
    if rewards.ndim != 3 or rewards.shape[0] != samples or not torch.isfinite(rewards).all():
        raise bad(
            f"holds rewards of shape {tuple(rewards.shape)} or non-finite values ({samples} samples expected)"
        )
    if not (
        isinstance(responses, list)
        and len(responses) == samples
        and all(isinstance(s, list) and len(s) == rewards.shape[1] for s in responses)
        and all(isinstance(t, str) for s in responses for t in s)
    ):
        raise bad(f"holds responses that are not {samples} lists of {rewards.shape[1]} texts")
    return point


def verify_points(
    done: dict[tuple[str, str], Point],
    plan: Plan,
    prompts: Sequence[str],
    objectives: Sequence,
    out: Path,
) -> None:
    """Refuse stored points that do not hold what they claim: the plan's preference for their label, one reward
    row per prompt, and rewards that rescoring their stored responses reproduces (scoring is cheap next to
    generating, and nothing short of it catches an edit that keeps the file valid JSON)."""
    wanted = {(m, label): lam for m, label, lam in plan.points}
    batch = plan.batch_size  # the chunks they were scored in when made (a padded scorer sees the same)
    scored: dict[tuple[str, ...], torch.Tensor] = {}  # responses -> scores (a copied point's scored once)
    for (method, label), point in done.items():
        path = point_file(out, method, label)
        lam = wanted[(method, label)]
        fix = "Delete that file (it is recomputed), or pass another out folder."
        claimed = None if point.preference is None else torch.tensor(point.preference, dtype=torch.float64)
        if (lam is None) != (claimed is None) or (
            lam is not None
            and (claimed.shape != lam.shape or not torch.allclose(claimed, lam.double(), atol=1e-9))
        ):
            raise ConfigError(f"the stored point {str(path)!r} is for preference {point.preference}, not {label}.",
                              field="out", value=str(out), fix=fix)  # fmt: skip
        if point.rewards.shape[1:] != (len(prompts), len(objectives)):
            raise ConfigError(f"the stored point {str(path)!r} holds rewards of shape {tuple(point.rewards.shape)} "
                              f"for {len(prompts)} prompts and {len(objectives)} objectives.",
                              field="out", value=str(out), fix=fix)  # fmt: skip
        for s, texts in enumerate(point.responses):
            if tuple(texts) not in scored:
                scored[tuple(texts)] = torch.cat([
                    score_matrix(objectives, prompts[lo : lo + batch], texts[lo : lo + batch]).float()
                    for lo in range(0, len(prompts), batch)
                ])  # fmt: skip
            again = scored[tuple(texts)]
            for lo in range(0, len(prompts), batch):
                stored = point.rewards[s, lo : lo + batch]
                if not torch.allclose(again[lo : lo + batch], stored, atol=1e-3, rtol=1e-3):
                    raise ConfigError(
                        f"the stored point {str(path)!r} holds rewards its responses do not score (sample {s}, "
                        f"prompts {lo}-{lo + len(stored) - 1}): it was edited or made by other objectives.",
                        field="out", value=str(out), fix=fix,
                    )  # fmt: skip
