"""What a router run checks before its bundle loads: the anchor (or ``--anchor auto``'s pick), the objectives,
the router's name and place, z*, the hypervolume reference point, the experts the reference needs. Cheap (the
manifest only, no weights), and every problem at once."""

from __future__ import annotations

import numpy as np
import torch

from hoe.errors import ConfigError, HoEError, PreferenceError, raise_all
from hoe.preference import Preference
from hoe.training.router.config import RouterConfig, needs, needs_target, router_name


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
