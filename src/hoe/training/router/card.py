"""The trained router on disk: the new bundle, its training record and a card.

``<out>/`` is a complete HoE bundle (:mod:`hoe.bundle.folder`: the input bundle's experts and routers plus the
new router, whose manifest entry fingerprints the experts it mixes), with ``hoe_router_training.json`` (the
exact command, config, seed, z* and where it came from, the calibration, final OMD weights and KL
coefficient, versions and the per-step log), ``log.jsonl`` and ``checkpoints/`` (to resume with more steps;
safe to delete). ``README.md`` is the bundle card followed by the router's.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import torch

from hoe.bundle.folder import write_bundle
from hoe.provenance import command_line, versions
from hoe.training.record import made_by, summarise, versions_line, write_record
from hoe.training.router.config import RouterConfig

ROUTER_RECORD = "hoe_router_training.json"


class TrainedRouter(Protocol):
    """What the record reads of a finished run (:class:`hoe.training.router.recipe.RouterRecipe`)."""

    config: RouterConfig
    dist: Any  # a Dist: its world size is recorded
    model: Any  # an HoEModel
    objectives: list
    router: int
    measured: Any  # z*, its calibration record
    w: torch.Tensor | None
    kl_coef: float
    placement: dict | None
    history: list[dict]
    commands: list[str]

    @property
    def names(self) -> list[str]: ...


def write_router_bundle(out: Path, run: TrainedRouter) -> None:
    """Write the bundle, the record and the card into ``out`` (the run's partial folder, published afterwards)."""
    write_bundle(run.model, out)
    record = training_record(run)
    write_record(out / ROUTER_RECORD, record)
    with (out / "README.md").open("a") as f:
        f.write("\n" + card(record))


def _named(names: list[str], values) -> dict[str, float] | None:
    return None if values is None else {n: round(float(v), 6) for n, v in zip(names, values)}


def training_record(run: TrainedRouter) -> dict:
    names = run.names
    keys = ("utility", "kl", "seconds", *(f"score_{n}" for n in names))
    spec = run.model.routers[run.router]
    return {
        "format": "hoe-router-training/1",
        "recipe": f"mo-ppo-{run.config.scalarisation}",
        "router": spec.name,
        "anchor": _named(names, spec.anchor),
        "experts": list(spec.experts),
        "objectives": {n: o.name for n, o in zip(names, run.objectives)},
        "objective_specs": run.config.objective or names,
        "command": command_line(),
        "commands": run.commands,
        "seed": run.config.seed,
        "steps_done": len(run.history),
        "global_batch": run.config.batch_size,
        "processes": run.dist.world,
        "z_star": _named(names, run.measured.z_star),
        "z_star_source": run.measured.calibration.get("z_star_source"),
        "calibration": run.measured.calibration,
        "placement": run.placement,
        "final_w": _named(names, run.w),
        "final_kl_coef": round(run.kl_coef, 6),
        "summary": summarise(run.history, keys),
        "config": asdict(run.config),
        "versions": versions(),
        "history": run.history,
    }


def _placement_text(record: dict) -> str:
    pick = record.get("placement")
    if not pick:
        return "given (--anchor)"
    return f"placed by hoe place-routers ({record['config']['placement']}): {pick['reason']}"


def _target_text(record: dict) -> str:
    z, source = record["z_star"], record["z_star_source"]
    cal = record["calibration"]
    if z is None and "baseline" in cal:
        return f"not used; the baseline is HoE-LoRA's mean rewards at the anchor, {cal['baseline']}"
    if z is None and "reference_point" in cal:
        return f"not used; the hypervolume reference point r is {cal['reference_point']}"
    if z is None:
        return f"not used ({record['config']['scalarisation']} scalarisation)"
    if source != "data":
        return f"{z} (given)"
    margin = record["calibration"].get("margin")
    return f"{z} (measured: best mean of the single-objective experts + {margin} standard deviations)"


def card(record: dict) -> str:
    c, s = record["config"], record["summary"]

    def fmt(key: str) -> str:
        return "n/a" if s.get(key) is None else f"{s[key]:.4f}"

    scores = "; ".join(
        f"{n} {fmt('first10_score_' + n)} -> {fmt('last10_score_' + n)}" for n in record["anchor"]
    )
    return (
        f"## Router expert `{record['router']}`\n\n"
        f"Trained by multi-objective PPO ({c['scalarisation']} scalarisation"
        f"{' with online mirror descent' if c['scalarisation'] != 'linear' else ''}) at the anchor "
        f"{record['anchor']}, mixing the LoRA experts {record['experts']}; the base model and every LoRA expert "
        f"were frozen. KL reference: {c['reference']}; first mixture: "
        f"{record['calibration'].get('init', 'uniform')}.\n\n"
        f"- steps: {record['steps_done']} × {c['batch_size']} prompts (global, {record['processes']} process(es)), "
        f"{c['ppo_epochs']} PPO epochs × {c['minibatches']} minibatches, lr {c['lr']}, max {c['max_new_tokens']} "
        f"new tokens, temperature {c['temperature']}, seed {record['seed']}\n"
        f"- prompts: `{c['prompts']}` (split `{c['split']}`); objectives {record['objective_specs']}\n"
        f"- anchor: {_placement_text(record)}\n"
        f"- target point z*: {_target_text(record)}\n"
        f"- final OMD weights w: {record['final_w']}; final KL coefficient {record['final_kl_coef']}\n"
        f"- utility, first 10 / last 10 steps: {fmt('first10_utility')} -> {fmt('last10_utility')}; "
        f"KL: {fmt('first10_kl')} -> {fmt('last10_kl')}\n"
        f"- mean scores, first 10 / last 10 steps: {scores}\n"
        f"- seconds per step (last 10): {fmt('last10_seconds')}\n"
        f"- made by: {made_by(record)}\n"
        f"- versions: {versions_line(record)}\n\n"
        f"The per-step log is in `{ROUTER_RECORD}` and `log.jsonl`; `checkpoints/` holds the last training "
        "checkpoint (to resume with more steps; safe to delete).\n"
    )
