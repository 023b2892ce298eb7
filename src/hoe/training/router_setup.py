"""Setting up a router training run: check, load, add the router, measure z*, or resume.

Everything that can be checked before the model loads is (the options, the bundle's manifest, the output
folder, the prompts); then the bundle loads on every process, the new router is added, and either the run is
restored from its last checkpoint or z* and the value heads are calibrated (:mod:`hoe.training.calibration`).
Only rank 0 claims the partial folder, after every rank has checked it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from hoe.dtypes import DTYPES
from hoe.errors import ConfigError, HoEError, HoEWarning, PreferenceError, bad_value, raise_all
from hoe.scalarisation.tchebycheff import omd_fixed_point
from hoe.training import loop
from hoe.training.calibration import calibrate
from hoe.training.distributed import Dist
from hoe.training.router import (
    RESUMABLE,
    Preference,
    RouterConfig,
    RouterRun,
    make_scalarisation,
    needs,
    needs_target,
    router_init,
)
from hoe.training.run_folder import RunFolder
from hoe.training.trajectory import ValueHeads


def soup_reference(model, lam: torch.Tensor) -> torch.Tensor:
    """The linear soup Σ_i λ_i B_i A_i of the single-objective experts (the authors' Rewarded-Soups model)."""
    return model.soup_weights(lam)


def lora_hoe_reference(model, lam: torch.Tensor) -> torch.Tensor:
    """HoE without routers at λ (:meth:`HoEModel.lora_only_weights`)."""
    return model.lora_only_weights(lam)


REFERENCE_WEIGHTS = {"soup": soup_reference, "hoe-lora": lora_hoe_reference}
"""``--reference`` -> the KL reference's LoRA-expert weights w⁽²⁾ at λ, (E,)."""


def check_against_bundle(config: RouterConfig) -> tuple[dict, torch.Tensor, list[str]]:
    """What needs the bundle's manifest (cheap: no weights): the anchor, the objectives' names, the router's
    name and place, the reference's experts. Every problem at once. Returns (manifest, λ, objective specs)."""
    from hoe.bundle.folder import read_manifest
    from hoe.objectives.base import specs_for
    from hoe.preference import to_simplex

    manifest = read_manifest(config.model)
    names = manifest["objectives"]
    errors: list[HoEError | None] = []
    lam = None
    try:
        lam = to_simplex(config.anchor, names, "anchor")
    except PreferenceError as e:
        errors.append(e)
    specs = None
    try:
        specs = specs_for(names, config.objective)
    except ConfigError as e:
        errors.append(e)
    if lam is not None:
        errors.append(_router_place_error(config, manifest, lam))
        errors.append(_name_error(config, lam))
        errors.append(_target_error(config, names))
        errors.append(_reference_point_error(config, names, specs))
    errors.extend(_vertex_errors(config, manifest))
    raise_all(errors)
    assert lam is not None and specs is not None
    return manifest, lam, specs  # in the bundle's order


def router_name(config: RouterConfig, lam: torch.Tensor) -> str:
    return config.name or "router-" + "-".join(f"{a:.2f}" for a in lam.tolist())


def _name_error(config: RouterConfig, lam: torch.Tensor) -> HoEError | None:
    """The router's name must be usable as a folder name (save-router writes it as one): checked first, not
    after minutes of training."""
    from hoe.experts.extract import validate_names

    try:
        validate_names({router_name(config, lam): None}, "name")
    except ConfigError as e:
        return e
    return None


def _router_place_error(config: RouterConfig, manifest: dict, lam: torch.Tensor) -> HoEError | None:
    from hoe.model.router import warn_if_on_an_expert

    routers = manifest.get("routers", [])
    name = router_name(config, lam)
    objectives = manifest["objectives"]
    warn_if_on_an_expert(
        name, lam, {e["name"]: [e["anchor"].get(o, 0.0) for o in objectives] for e in manifest["experts"]}
    )
    if any(r["name"] == name for r in routers):
        return ConfigError(
            f"the bundle has a router named {name!r} already.",
            field="name",
            value=name,
            fix="Give the new router another name.",
        )
    for r in routers:
        other = np.array([r["anchor"].get(o, 0.0) for o in manifest["objectives"]], dtype=np.float64)
        if np.abs(other / other.sum() - lam.numpy()).max() < 1e-9:
            return ConfigError(
                f"the bundle's router {r['name']!r} sits at this anchor already (it would keep all the weight).",
                field="anchor",
                value=config.anchor,
                fix="Train on a bundle without it, or pick another anchor.",
            )
    return None


def _target_error(config: RouterConfig, names: list[str]) -> HoEError | None:
    try:
        parse_target(config.target_point, names)
    except ConfigError as e:
        return e
    return None


def _reference_point_error(
    config: RouterConfig, names: list[str], specs: list[str] | None
) -> HoEError | None:
    if not needs(config, "ref_point"):
        return None
    try:
        hv_reference_point(config, names, specs or names)
    except ConfigError as e:
        return e
    return None


def hv_reference_point(config: RouterConfig, names: list[str], specs: list[str]) -> torch.Tensor | None:
    """The hypervolume scalarisation's r: ``reference_point``, or ``hoe evaluate``'s default (BENCH.md's for
    the smol3 objectives); None when the scalarisation takes none."""
    from hoe.evaluation.evaluate import reference_point

    return reference_point(config.reference_point, names, specs) if needs(config, "ref_point") else None


def parse_target(target: Preference | None, names: list[str]) -> torch.Tensor | None:
    """z* as (m,) float64 from ``"a=0.7,b=2.2"``, ``"0.7,2.2"``, a mapping or a list; any finite values."""
    from hoe.preference import objective_vector

    return None if target is None else objective_vector(target, names, "target_point")


def _vertex_errors(config: RouterConfig, manifest: dict) -> list[HoEError]:
    """The soup reference and the measured z* both need one single-objective expert per objective."""
    objectives = manifest["objectives"]
    missing = [o for o in objectives if not any(_is_vertex(e["anchor"], o) for e in manifest["experts"])]
    if not missing:
        return []
    errors: list[HoEError] = []
    if config.reference == "soup":
        errors.append(
            ConfigError(
                f"the soup reference needs a single-objective expert per objective; none for {missing}.",
                field="reference",
                value="soup",
                fix="Pass hoe-lora (HoE without routers at the anchor) as the reference.",
            )
        )
    if config.target_point is None and needs_target(config):
        errors.append(
            ConfigError(
                f"z* is measured on the single-objective experts, and the bundle has none for {missing}.",
                field="target_point",
                fix="Pass a target reward per objective.",
            )
        )
    return errors


def _is_vertex(anchor: dict[str, float], objective: str) -> bool:
    total = sum(anchor.values())
    return total > 0 and anchor.get(objective, 0.0) / total >= 1 - 1e-9


def resolve_anchor(config: RouterConfig) -> tuple[RouterConfig, dict | None]:
    """``--anchor auto``: the next pick of ``--placement`` that the bundle has no router at
    (:func:`hoe.training.placement.next_anchor`); ``auto:K``: its K-th pick. Named after the pick unless
    ``--name`` is given. Returns the config with the anchor written out, and the pick."""
    import dataclasses

    from hoe.bundle.folder import read_manifest
    from hoe.training.placement import next_anchor, nth_anchor, read_placement

    if not str(config.anchor).startswith("auto"):
        return config, None
    manifest = read_manifest(config.model)
    placement = read_placement(config.placement)
    pick = (
        next_anchor(placement, manifest) if config.anchor == "auto" else nth_anchor(placement, config.anchor)
    )
    anchor = ",".join(f"{n}={v}" for n, v in zip(manifest["objectives"], pick["anchor"]))
    return dataclasses.replace(config, anchor=anchor, name=config.name or pick["name"]), pick


def setup(config: RouterConfig) -> RouterRun:
    """A run ready for its first (or next) step; see the module docstring for the order of things."""
    from hoe.data.prompts import load_prompts

    config, placed = resolve_anchor(config)
    manifest, lam, specs = check_against_bundle(config)
    target = parse_target(config.target_point, manifest["objectives"])
    from hoe.bundle.folder import bundle_base

    base = bundle_base(manifest["base"], Path(config.model))  # loaded too: never an output
    inputs = {"model": config.model, "base": base, "prompts": config.prompts, "placement": config.placement}
    folder = RunFolder.open(config.out, config.resume, config.overwrite, inputs=inputs)
    prompts = [p.text for p in load_prompts(config.prompts, config.split)]
    dist = Dist.from_env(config.device)
    try:
        if config.batch_size < dist.world:
            raise bad_value(
                "batch_size",
                config.batch_size,
                f"Pass at least one prompt per process ({dist.world} processes).",
            )
        run = _build(config, folder, dist, lam, specs, prompts)
        run.placement = placed
        if folder.resume_from is not None:
            loop.restore(run, folder.resume_from, RESUMABLE)
        else:
            run.ref_point = hv_reference_point(config, manifest["objectives"], specs)
            _fresh_start(run, target)
        run.scalarisation = make_scalarisation(config, lam, run.measured)
        dist.barrier()  # every rank has checked the partial folder before rank 0 claims it
        if dist.is_main:
            folder.start()
        dist.barrier()
    except BaseException:
        dist.close()
        raise
    return run


def _build(
    config: RouterConfig,
    folder: RunFolder,
    dist: Dist,
    lam: torch.Tensor,
    specs: list[str],
    prompts: list[str],
) -> RouterRun:
    from hoe.generation.text import load_tokenizer
    from hoe.model.hoe_model import HoEModel

    model = HoEModel.from_pretrained(config.model, dtype=DTYPES[config.dtype], device=dist.device)
    tokenizer = load_tokenizer(model.base_ref)
    objectives = _objectives(config, specs, model.objectives, tokenizer, dist)
    lora_only = lora_hoe_reference(model, lam)
    start = lora_only if router_init(config) == "hoe-lora" else None
    model.add_router(router_name(config, lam), lam, mixture=start)
    model.routers_to(torch.float32)  # over a bf16/fp16 bundle the routers still train in float32
    model.eval()  # no dropout: the policy that samples is the one that is scored and trained
    if config.gradient_checkpointing:
        model.activation_checkpointing(True)
    hidden = model.base_model.get_output_embeddings().weight.shape[1]
    heads = ValueHeads(hidden, len(objectives)).to(dist.device)
    optimizer = torch.optim.Adam(
        [
            {"params": model.router_parameters(), "lr": config.lr},
            {"params": list(heads.parameters()), "lr": config.value_lr or config.lr},
        ]
    )
    reference = {"expert_weights": REFERENCE_WEIGHTS[config.reference](model, lam)}
    return RouterRun(
        config, folder, dist, model, tokenizer, objectives, prompts, len(model.routers) - 1, lam, heads,
        optimizer, reference, kl_coef=config.init_kl_coef,
    )  # fmt: skip


def _objectives(config: RouterConfig, specs: list[str], names: list[str], tokenizer, dist: Dist) -> list:
    """The objectives, in the bundle's order; their names must be the bundle's objectives."""
    from hoe.objectives import ObjectiveContext, build_objectives

    context = ObjectiveContext(
        tokenizer=tokenizer, max_new_tokens=config.max_new_tokens, device=str(dist.device)
    )
    objectives = build_objectives(specs, context)
    if [o.name for o in objectives] != names:
        raise ConfigError(
            f"the objectives are named {[o.name for o in objectives]}, the bundle's {names}.",
            field="objective",
            value=specs,
            fix="Name each one like a bundle objective (NAME=KIND[:ARG]).",
        )
    return objectives


def _fresh_start(run: RouterRun, target: torch.Tensor | None) -> None:
    """z* (given, or measured), the LoRA-only baseline (when the scalarisation takes it), the value heads' bias,
    the scalarisation's first weights."""
    baseline = (
        {"expert_weights": lora_hoe_reference(run.model, run.anchor)}
        if needs(run.config, "baseline")
        else None
    )
    cal = calibrate(run, target, needs_target(run.config), baseline)
    run.z_star, run.baseline, run.calibration = cal.z_star, cal.baseline, cal.record
    if run.ref_point is not None:
        run.calibration["reference_point"] = {n: float(v) for n, v in zip(run.names, run.ref_point)}
    run.calibration["init"] = router_init(run.config)
    run.value_heads.init_bias(cal.value_init)
    run.w = make_scalarisation(run.config, run.anchor, run.measured).initial_weights()
    run.kl_coef = run.config.init_kl_coef
    if run.config.scalarisation == "tchebycheff" and run.z_star is not None:
        _check_omd_scale(run, cal.value_init)


def _check_omd_scale(run: RouterRun, start: torch.Tensor) -> None:
    """Record where OMD would settle at the initial policy's mean rewards, and warn when that is so close to
    uniform that Tchebycheff would act like the linear scalarisation (rewards on a small scale for η)."""
    lam = run.anchor
    fixed = omd_fixed_point(lam, run.z_star, start.to(lam), run.config.omd_step_size)
    run.calibration["omd_fixed_point"] = {n: round(float(v), 6) for n, v in zip(run.names, fixed)}
    support = int((lam > 0).sum())
    if run.dist.is_main and support > 1 and float(fixed.max()) < 1.5 / support:
        warnings.warn(
            HoEWarning(
                f"at the initial policy's rewards OMD would settle at w = {[round(float(v), 3) for v in fixed]}, "
                "close to uniform: the rewards' gaps to z* are small next to 1 / omd_step_size, so the policy "
                "ascends a near-equal sum of the objectives' advantages, not their worst gap. Raise the OMD step size (omd_step_size, e.g. 30 for rewards "
                "in [0, 1]) or rescale the rewards."
            ),
            stacklevel=2,
        )
