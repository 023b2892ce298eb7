"""``hoe build``: assemble LoRA experts (and optional router experts) into an HoE bundle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from hoe.bundle.folder import load_base_model, stored_base
from hoe.bundle.router_folder import attach_router, read_router
from hoe.errors import ConfigError, PreferenceError
from hoe.experts.extract import validate_names
from hoe.io.adapters import read_adapter, read_record
from hoe.io.atomic import check_output_dir
from hoe.model.hoe_model import ExpertSpec, HoEModel
from hoe.model.router import warn_if_on_an_expert
from hoe.preference import PreferenceLike, to_simplex


def build(
    base: str,
    expert: Mapping[str, str | Path],
    out: str | Path,
    anchors: Mapping[str, PreferenceLike] | None = None,
    routers: Mapping[str, PreferenceLike] | None = None,
    overwrite: bool = False,
    trained_routers: Sequence[str | Path] = (),
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Build an HoE bundle from LoRA expert folders (name -> PEFT adapter).

    The objectives are the names of the single-objective experts, in the order given: every expert without an
    explicit anchor in ``anchors`` whose record is not a merged one. A merged expert's anchor is taken from
    ``anchors`` or its own record (``hoe merge`` writes it). ``routers`` (name -> anchor) adds untrained router
    experts (uniform mixtures of their nearest LoRA experts) for later training; ``trained_routers`` attaches
    router folders written by :func:`~hoe.bundle.router_folder.save_router`, each refused unless these experts
    are exactly the ones it was trained with (names, order, fingerprints). A ``base`` that is a local
    folder is stored as an absolute path, so the bundle loads from any directory.

    Everything is checked (names, anchors, output folder) before the base model is loaded.
    """
    validate_names(expert, "expert")
    if routers:
        validate_names(routers, "router")
    anchors = dict(anchors or {})
    unknown = sorted(set(anchors) - set(expert))
    if unknown:
        raise ConfigError(
            f"anchors given for unknown experts {unknown}.",
            field="expert",
            value=unknown,
            fix=f"Give anchors only to the experts {list(expert)}.",
        )
    inputs = {"expert": list(expert.values()), "base": base, "router_from": list(trained_routers)}
    check_output_dir(out, overwrite, inputs=inputs)
    records = {name: read_record(folder, "expert") or {} for name, folder in expert.items()}
    objectives = [n for n in expert if n not in anchors and records[n].get("kind") != "merged"]
    if len(objectives) < 2:
        raise ConfigError(
            f"HoE needs at least 2 single-objective experts (their names are the objectives); got {objectives}.",
            field="expert",
            value=objectives,
            fix="Pass one expert without an anchor per objective.",
        )
    specs = [_spec(name, anchors, records[name], objectives) for name in expert]
    _refuse_shared(expert, specs, objectives)
    for folder in trained_routers:
        read_router(folder)  # a bad folder fails before the base model loads
    router_anchors = {n: _anchor(a, objectives, "router", n) for n, a in (routers or {}).items()}
    for name, anchor in router_anchors.items():
        warn_if_on_an_expert(name, anchor, {s.name: s.anchor for s in specs})
    weights = [read_adapter(folder, "expert") for folder in expert.values()]
    base_ref = stored_base(base)
    model = HoEModel(load_base_model(base_ref, dtype), objectives, specs, weights, base_ref)
    for folder in trained_routers:
        attach_router(model, folder)
    for name, anchor in router_anchors.items():
        model.add_router(name, anchor)
    return model.save_pretrained(out, overwrite)


def _refuse_shared(expert: Mapping[str, str | Path], specs: list[ExpertSpec], objectives: list[str]) -> None:
    """Two experts at one anchor (preference routing would always give the second weight 0) or one folder
    under two objectives' names (one model counted as two objectives) are refused, naming both. (One merged
    adapter at two anchors is allowed: it is placed twice, on purpose.)"""
    seen: dict[tuple[float, ...], str] = {}
    for spec in specs:
        key = tuple(round(a, 9) for a in spec.anchor)
        if key in seen:
            raise ConfigError(
                f"the experts {seen[key]!r} and {spec.name!r} sit at the same anchor {list(key)}; preference "
                f"routing would always give {spec.name!r} weight 0.",
                field="expert",
                value=[seen[key], spec.name],
                fix="Keep one of them, or give the merged one another anchor (NAME=DIR@PREFERENCE).",
            )
        seen[key] = spec.name
    folders: dict[Path, str] = {}
    for name, folder in ((n, f) for n, f in expert.items() if n in objectives):
        real = Path(folder).expanduser().resolve()
        if real in folders:
            raise ConfigError(
                f"the folder {str(folder)!r} is given as both {folders[real]!r} and {name!r}.",
                field="expert",
                value=[folders[real], name],
                fix="Pass each expert's own adapter folder once.",
            )
        folders[real] = name


def _spec(
    name: str, anchors: Mapping[str, PreferenceLike], record: dict, objectives: list[str]
) -> ExpertSpec:
    if name in objectives:
        anchor = to_simplex({name: 1.0}, objectives, "expert")
    else:
        given = anchors.get(name, record.get("anchor"))
        if not given:
            raise ConfigError(
                f"the merged expert {name!r} has no anchor.",
                field="expert",
                value=name,
                fix="Give it one, e.g. DIR@helpful=0.5,harmless=0.5 (`anchors` in Python), or merge it again.",
            )
        anchor = _anchor(given, objectives, "expert", name)
    record = record | {"anchor": dict(zip(objectives, anchor.tolist()))}
    return ExpertSpec(name, tuple(anchor.tolist()), record)


def _anchor(given: PreferenceLike, objectives: list[str], field: str, name: str) -> torch.Tensor:
    """``given`` on the simplex; an error names the expert or router whose anchor it is."""
    try:
        return to_simplex(given, objectives, field)
    except PreferenceError as e:
        raise PreferenceError(
            f"the anchor of {name!r}: {e.problem}", field=field, value=e.value, fix=e.fix
        ) from None
