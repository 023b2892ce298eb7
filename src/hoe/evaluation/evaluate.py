"""``hoe evaluate``: the Pareto fronts of HoE and the baselines on one protocol (BENCH.md §1–§2).

Every method (:mod:`hoe.evaluation.methods`) answers the same prompts at the same preferences (the simplex
lattice with step 1/``grid``, plus any ``preference`` asked for) with the same seeds; every response is scored
by the bundle's objectives. ``OUT`` then holds

* ``points/<method>/<label>.json``: each point's rewards and responses, stored as it finishes, so that an
  interrupted evaluation resumes where it stopped (:mod:`hoe.evaluation.sweep`);
* ``results.json``: objectives, reference point, config, versions, command and, per method, its points
  (mean, s.e., n), hypervolume with a paired bootstrap interval, the ratio to the best baseline,
  controllability, mean Tchebycheff utility, tokens/s and forward passes per token
  (:mod:`hoe.evaluation.summary`);
* ``results.md`` (:mod:`hoe.evaluation.report`), ``pareto.png``, ``hypervolume.png`` and ``simplex.png`` (:mod:`hoe.evaluation.plots`).

The hypervolume's reference point is BENCH.md's for the smol3 objectives (relevance 0, positivity −0.5,
brevity 0) and must be given for any other objectives: it is part of the protocol, never tuned to the results.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from hoe.distributed import Dist
from hoe.dtypes import DTYPES
from hoe.errors import ConfigError, HoEError, OutputExistsError, bad_value, raise_all
from hoe.evaluation.methods import METHODS, Decoding, Method, preference_label
from hoe.evaluation.models import Models, open_tuned_models, tuned_refs
from hoe.evaluation.sweep import Plan, load_finished, run_sweep, shard_points, verify_points
from hoe.io.atomic import Inputs, atomic_file, output_path, refuse_inputs
from hoe.preference import Preference
from hoe.validation import at_least, non_empty, one_of, validate, whole_at_least

ALL_METHODS = ("hoe", "hoe-lora", "soup", "rs", "mod", "base", "experts")
SMOL3_REFERENCE = {"relevance": 0.0, "positivity": -0.5, "brevity": 0.0}
"""BENCH.md §1's hypervolume reference point for the smol3 objectives (the built-in kinds of these names)."""
BOOTSTRAP_SEED = 0
RESULTS_FORMAT = "hoe-evaluation/1"


@dataclass
class EvaluateConfig:
    """Everything ``evaluate`` needs; field names are the CLI flags (``max_new_tokens`` -> ``--max-new-tokens``)."""

    model: str  # the bundle
    out: str  # the results folder (resumable)
    methods: list[str] | str = ",".join(ALL_METHODS)
    prompts: str = "smol:eval"  # a JSONL file, or smol:SPLIT
    split: str | None = None
    limit: int | None = None  # the first N prompts only
    grid: int = 4  # simplex lattice with step 1/grid
    preference: list[Preference] = field(default_factory=list)  # extra points
    samples: int = 4  # responses per prompt and point
    max_new_tokens: int = 48
    temperature: float = 0.7
    seed: int = 0  # sample s of prompt i (of n) is seeded seed + s·n + i
    objective: list[str] | None = None  # NAME=KIND[:ARG] per bundle objective (default: their names)
    reference_point: Preference | None = None  # default: BENCH.md's for smol3
    tuned: dict[str, str] = field(default_factory=dict)  # objective -> tuned model (default: the records)
    chat: bool = True
    batch_size: int = 16
    bootstrap: int = 1000  # resamples
    device: str = "auto"
    dtype: str = "float32"
    overwrite: bool = False  # redo stored points made with other settings (else they are refused)
    reuse: bool = True  # copy a point another method computes identically instead of generating it again
    shard: str | None = None  # "I/N": this process computes shard I (0-based) of N; default: torchrun's rank

    def __post_init__(self) -> None:
        if isinstance(self.methods, str):
            self.methods = [m.strip() for m in self.methods.split(",") if m.strip()]
        self.methods = list(self.methods)
        self.preference = list(self.preference or [])
        self.tuned = {str(k): str(v) for k, v in (self.tuned or {}).items()}
        validate(self, _CHECKS)


def _methods_known(c: EvaluateConfig) -> HoEError | None:
    methods = list(c.methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        return bad_value("methods", ",".join(map(str, unknown or methods)), f"Choose among {list(METHODS)}.")
    twice = sorted({m for m in methods if methods.count(m) > 1})
    if twice:
        return bad_value("methods", ",".join(methods), f"Name each method once ({twice} repeat).")
    return None


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    index, slash, count = str(text).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = -1
    if not slash or not 0 <= i < n:
        raise bad_value("shard", text, "Write I/N with 0 <= I < N: 0/2 and 1/2 split the points in two.")
    return i, n


def _shard(c: EvaluateConfig) -> HoEError | None:
    try:
        return None if c.shard is None else (parse_shard(c.shard) and None)
    except HoEError as e:
        return e


def _limit(c: EvaluateConfig) -> HoEError | None:
    return None if c.limit is None else whole_at_least("limit", 1, "a number of prompts")(c)


SEED_ROOM = 2**32
"""Room above ``seed`` for the per-sample, per-prompt offsets s·n + i (over four billion responses)."""


def _seed_fits(c: Any) -> HoEError | None:
    seed = c.seed
    if isinstance(seed, int) and not isinstance(seed, bool) and seed > 2**63 - 1 - SEED_ROOM:
        return bad_value(
            "seed", seed, "Pass a seed from 0 to 2**63 - 2**32 - 1 (samples are seeded seed + s·n + i)."
        )
    return None


_CHECKS = [
    non_empty("model", "the bundle to evaluate"),
    non_empty("out", "the folder for the results"),
    non_empty("prompts", "a prompt file or smol:eval"),
    _methods_known,
    _limit,
    _shard,
    whole_at_least("grid", 1, "the lattice divisions (4: step 1/4)"),
    whole_at_least("samples", 1, "a number of responses per prompt"),
    whole_at_least("max_new_tokens", 1, "a number of tokens"),
    at_least("temperature", 0, "a temperature (0 decodes greedily)"),
    whole_at_least("seed", 0, "a seed"),
    _seed_fits,
    whole_at_least("batch_size", 1, "a number of prompts per batch"),
    whole_at_least("bootstrap", 1, "a number of bootstrap resamples"),
    one_of("dtype", list(DTYPES)),
]


@dataclass
class _Inputs:
    """What is known before any model loads."""

    manifest: dict
    specs: list[str]
    ref: torch.Tensor
    grid: torch.Tensor
    prompts: list[str]
    device: torch.device
    soup: object
    out: Path


def evaluate(config: EvaluateConfig, progress: bool = True) -> dict | None:
    """Run (or resume) the evaluation of ``config`` and write ``config.out``; return ``results.json``'s
    content. Every input is checked, and stored points are matched to the config, before anything loads
    or is written.

    Sharded (``config.shard`` ``I/N``, or N processes under ``torchrun``), a process computes its share of the
    points (:func:`~hoe.evaluation.sweep.shard_points`) into the one ``out`` folder; ``results.json`` is
    written by rank 0 after all ranks under ``torchrun``, and with ``--shard`` by the shard that finds every
    point stored when it finishes (a rerun without sharding writes it too). A process that does not write it
    returns None."""
    start = time.perf_counter()
    inputs = _check_inputs(config)
    dist = Dist.from_env(config.device) if config.shard is None else Dist(device=inputs.device)
    inputs.device = dist.device  # under torchrun on GPUs, each rank its own
    index, count = parse_shard(config.shard) if config.shard is not None else (dist.rank, dist.world)
    try:
        methods, objectives, plan, models = _setup(config, inputs)
        mine = plan if count == 1 else replace(plan, points=shard_points(plan, methods, index, count))
        done = load_finished(mine, inputs.out, config.overwrite)
        verify_points(done, mine, inputs.prompts, objectives, inputs.out)
        needs = [(name, METHODS[name].needs) for name in config.methods]

        def release(finished: str) -> None:  # free the models no later method uses
            later = needs[[n for n, _ in needs].index(finished) + 1 :]
            models.keep(set().union(*(k for _, k in later)) if later else set())

        points = run_sweep(mine, methods, inputs.prompts, objectives, inputs.out, done, progress, release)
        dist.barrier()  # under torchrun, every rank's points are stored past this line
        if count > 1:
            points = _all_points(plan, inputs.out) if dist.is_main else None
            if points is None and dist.world > 1 and dist.is_main:
                raise RuntimeError(f"every rank finished, but {inputs.out} misses points of the plan")
            if points is None:
                return None
        return _write_results(config, inputs, plan, methods, points, time.perf_counter() - start)
    finally:
        dist.close()


def _all_points(plan: Plan, out: Path) -> dict[str, list] | None:
    """Every point of ``plan`` from ``out``, grouped by method in plan order, or None while some are missing
    (a shard still running)."""
    done = load_finished(plan, out, redo_changed=True)  # another shard's point still to redo is missing
    if len(done) < len(plan.points):
        return None
    grouped: dict[str, list] = {}
    for name, label, _ in plan.points:
        grouped.setdefault(name, []).append(done[(name, label)])
    return grouped


def _check_inputs(config: EvaluateConfig) -> _Inputs:
    from hoe.bundle.folder import bundle_base, read_manifest
    from hoe.data.prompts import load_prompts
    from hoe.devices import resolve_device
    from hoe.preference import simplex_lattice

    manifest = read_manifest(config.model)
    names = manifest["objectives"]
    errors: list[HoEError | None] = []
    from hoe.objectives.base import specs_for

    specs = _attempt(errors, lambda: specs_for(names, config.objective))
    ref = _attempt(errors, lambda: reference_point(config.reference_point, names, specs or names))
    lattice = _attempt(errors, lambda: simplex_lattice(len(names), config.grid))
    grid = _attempt(errors, lambda: _grid(lattice, config.preference, names)) if lattice is not None else None
    prompts = _attempt(errors, lambda: load_prompts(config.prompts, config.split))
    errors.append(_unused_tuned(config))
    raise_all(errors)
    prompts = [p.text for p in prompts][: config.limit]
    device = resolve_device(config.device)
    refs = None
    if any("tuned" in METHODS[m].depends for m in config.methods):
        refs = tuned_refs(Path(config.model), manifest, config.tuned)
    base = bundle_base(manifest["base"], Path(config.model))
    tuned = [str(r) for r in (refs or dict(config.tuned or {})).values()]
    out = _check_out(
        config.out, {"model": config.model, "base": base, "tuned": tuned, "prompts": config.prompts}
    )
    soup = None if refs is None else open_tuned_models(base, refs)
    return _Inputs(manifest, specs, ref, grid, prompts, device, soup, out)


def _attempt(errors: list[HoEError | None], check):
    """``check()``, or None with its error kept, so that every bad input is reported at once."""
    try:
        return check()
    except HoEError as e:
        errors.append(e)
        return None


def reference_point(given: Preference | None, names: list[str], specs: list[str]) -> torch.Tensor:
    """The hypervolume reference point (m,): ``given`` (``a=0,b=-0.5`` or ``0,-0.5``), or BENCH.md's for the
    smol3 objectives when each is its built-in kind."""
    from hoe.objectives.base import split_name
    from hoe.preference import objective_vector

    if given is None:
        kinds = [split_name(s)[1].partition(":")[0] for s in specs]
        if not (sorted(names) == sorted(SMOL3_REFERENCE) and kinds == list(names)):
            raise ConfigError(
                "is required for these objectives (BENCH.md fixes it only for relevance, positivity, brevity).",
                field="reference_point",
                fix=f"Pass the reward below which a point counts for nothing, one per objective {names}, "
                "chosen before looking at the results.",
            )
        return torch.tensor([SMOL3_REFERENCE[n] for n in names], dtype=torch.float64)
    return objective_vector(given, names, "reference_point")


def _grid(lattice: torch.Tensor, extra: list[Preference], names: list[str]) -> torch.Tensor:
    from hoe.preference import to_simplex

    points = [lattice] + [to_simplex(p, names, f"preference[{i}]")[None] for i, p in enumerate(extra)]
    grid = torch.cat(points)
    labels = [preference_label(lam) for lam in grid]  # points that share a label (4 decimals) are one
    return grid[[labels.index(label) for label in dict.fromkeys(labels)]]


def _unused_tuned(config: EvaluateConfig) -> HoEError | None:
    users = [m for m in config.methods if m in METHODS and "tuned" in METHODS[m].depends]
    if config.tuned and not users:
        return ConfigError(
            "is used only by the methods that run the tuned models (rs, mod, experts), and none is asked for.",
            field="tuned",
            value=dict(config.tuned),
            fix="Add one of them to the methods, or leave the tuned models out.",
        )
    return None


def _check_out(out: str, inputs: Inputs) -> Path:
    """A new folder, or one this command wrote (it holds ``points/`` or ``results.json``), apart from the
    ``inputs``."""
    refuse_inputs(out, inputs)
    path = output_path(out, "out", replaced=False)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{out!r} is a file.", field="out", value=out, fix="Pass a folder.")
    if (
        path.is_dir()
        and any(path.iterdir())
        and not ((path / "points").is_dir() or (path / "results.json").is_file())
    ):
        raise OutputExistsError(
            f"{out!r} holds other files than an evaluation's.",
            field="out",
            value=out,
            fix="Pass a new folder, or the folder of an earlier evaluation to resume it.",
        )
    return path


def _setup(config: EvaluateConfig, inputs: _Inputs):
    from hoe.generation.text import eos_token_ids, load_tokenizer
    from hoe.objectives import ObjectiveContext, build_objectives

    models = Models(Path(config.model), inputs.manifest, inputs.soup, DTYPES[config.dtype], inputs.device)
    tokenizer = load_tokenizer(models.base_ref)
    context = ObjectiveContext(
        tokenizer=tokenizer, max_new_tokens=config.max_new_tokens, device=str(inputs.device)
    )
    objectives = build_objectives(inputs.specs, context)
    decoding = Decoding(config.chat, config.max_new_tokens, config.temperature)
    eos = eos_token_ids(models.base_ref, tokenizer)
    methods: dict[str, Method] = {m: METHODS[m](models, tokenizer, decoding, eos) for m in config.methods}
    plan = Plan(
        points=[(name, label, lam) for name, m in methods.items() for label, lam in m.points(inputs.grid)],
        keys=_keys(config, inputs, models, methods),
        samples=config.samples,
        seed=config.seed,
        batch_size=config.batch_size,
        reuse=config.reuse,
    )
    return methods, objectives, plan, models


def _keys(config: EvaluateConfig, inputs: _Inputs, models: Models, methods: dict[str, Method]) -> dict:
    """What each method's numbers depend on (:mod:`hoe.evaluation.identity`): stored with each point,
    compared on resume. Each model is identified once, for every method that depends on it."""
    from hoe.evaluation.identity import adapter_identity, bundle_identity, model_identity
    from hoe.io.resolve import resolve_model_dir

    settings = {
        "prompts": prompts_digest(inputs.prompts),
        "samples": config.samples,
        "seed": config.seed,
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "chat": config.chat,
        "objective": inputs.specs,
        "dtype": config.dtype,
    }
    identify = {
        "experts": lambda: bundle_identity(config.model, "experts"),
        "routers": lambda: bundle_identity(config.model, "routers"),
        "base": lambda: model_identity(resolve_model_dir(models.base_ref, field="model")),
        "tuned": lambda: {
            t.name: adapter_identity(t.adapter) if t.adapter is not None else model_identity(t.folder)
            for t in inputs.soup.tuned
        },
    }
    used = {part for m in methods.values() for part in m.depends}
    ids = {part: identify[part]() for part in identify if part in used}
    return {
        name: {**settings, **{part: ids[part] for part in identify if part in m.depends}}
        for name, m in methods.items()
    }


def prompts_digest(prompts: list[str]) -> str:
    return hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:16]


def _write_results(config, inputs: _Inputs, plan: Plan, methods, points, seconds: float) -> dict:
    from hoe.evaluation.plots import write_all
    from hoe.evaluation.report import markdown
    from hoe.evaluation.summary import LEVEL, summarise
    from hoe.provenance import command_line, versions

    names = inputs.manifest["objectives"]
    kinds = {name: m.kind for name, m in methods.items()}
    summary = summarise(points, kinds, inputs.grid, names, inputs.ref, config.bootstrap, BOOTSTRAP_SEED)
    results = {
        "format": RESULTS_FORMAT,
        "objectives": names,
        "reference_point": dict(zip(names, inputs.ref.tolist())),
        "grid": inputs.grid.tolist(),
        "prompts": {
            "source": config.prompts,
            "split": config.split,
            "n": len(inputs.prompts),
            "sha256": prompts_digest(inputs.prompts),
        },  # fmt: skip
        "bootstrap": {"resamples": config.bootstrap, "seed": BOOTSTRAP_SEED, "level": LEVEL},
        "best_baseline": summary["best_baseline"],
        "methods": summary["methods"],
        "config": asdict(config),
        "keys": plan.keys,
        "seconds": round(seconds, 2),
        "command": command_line(),
        "versions": versions(),
    }
    out = inputs.out
    with atomic_file(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    with atomic_file(out / "results.md") as tmp:
        tmp.write_text(markdown(results), encoding="utf-8")
    write_all(results, out)  # pareto.png, hypervolume.png and, for three objectives, simplex.png
    return results
