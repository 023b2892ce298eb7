"""HoE bundles on disk: a folder with a JSON manifest and safetensors, no pickle.

    bundle/
      hoe_bundle.json          manifest: format, base model reference, objectives, experts and routers with
                               their anchors, versions, the command that made it
      experts/<name>/          one standard PEFT LoRA adapter per expert (+ its hoe_expert.json record)
      routers.safetensors      per adapted module: ``<module>.router_weight`` (R, E, in), ``.router_bias`` (R, E)
      README.md                a card

Each router in the manifest carries the fingerprint of the LoRA experts it mixes (:mod:`hoe.bundle.fingerprint`);
loading a router next to other experts than those is refused.

Loading validates everything (the manifest against :data:`MANIFEST_SCHEMA`, expert shapes against the base,
router shapes) before the model is returned, so a bad bundle raises a clear error naming the bad field's JSON
path (``experts[0].path``) and nothing is half-loaded.

The base model is stored as given when it is a built-in name or a Hugging Face id, and as an absolute path when
it is a local folder; an older manifest's relative path is read relative to the bundle folder, never the
current directory. ``HoEModel.from_pretrained(..., base=...)`` overrides it (``hoe generate --base``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from hoe.bundle.fingerprint import check_router, expert_fingerprint
from hoe.bundle.specs import ExpertSpec, RouterSpec
from hoe.errors import CheckpointError, ConfigError, ShapeMismatchError
from hoe.io.adapters import LoraWeights, read_adapter, read_record, write_adapter
from hoe.io.atomic import atomic_output_dir
from hoe.io.checkpoint import Checkpoint, SafetensorsFile
from hoe.io.resolve import stored_ref
from hoe.preference import to_simplex
from hoe.provenance import command_line, versions

if TYPE_CHECKING:  # save and load take the model; typing only
    from hoe.model.hoe_model import HoEModel

MANIFEST = "hoe_bundle.json"
FORMAT = "hoe-bundle/1"
ROUTERS_FILE = "routers.safetensors"

_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
_ANCHOR = {"type": "object", "minProperties": 1, "additionalProperties": {"type": "number", "minimum": 0}}
MANIFEST_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "HoE bundle manifest (hoe_bundle.json)",
    "type": "object",
    "required": ["format", "base", "objectives", "experts"],
    "properties": {
        "format": {"const": FORMAT},
        "base": {"type": "string", "minLength": 1},
        "objectives": {"type": "array", "items": _NAME, "minItems": 2, "uniqueItems": True},
        "experts": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "anchor", "path"],
                "properties": {"name": _NAME, "anchor": _ANCHOR, "path": {"type": "string", "minLength": 1}},
            },
        },
        "routers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "anchor", "experts"],
                "properties": {
                    "name": _NAME,
                    "anchor": _ANCHOR,
                    "experts": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "fingerprint": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["rank", "sha256"],
                            "properties": {"rank": {"type": "integer"}, "sha256": {"type": "string"}},
                        },
                    },
                },
            },
        },
        "command": {"type": "string"},
        "versions": {"type": "object"},
    },
}
"""JSON Schema of the manifest; :func:`read_manifest` checks it (then the cross-references) on every load."""


def save_bundle(model: HoEModel, bundle_dir: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` as a bundle folder; its base is stored resolved (see :func:`stored_base`)."""
    if not model.base_ref:
        raise ConfigError(
            "the model has no base reference to store.",
            field="base_ref",
            fix="Construct the HoEModel with base_ref set to its base model (a folder, built-in name or hub id).",
        )
    with atomic_output_dir(bundle_dir, overwrite, "out") as tmp:
        write_bundle(model, tmp)
    return Path(bundle_dir)


def write_bundle(model: HoEModel, folder: Path) -> dict:
    """Write the bundle files of ``model`` into the existing ``folder`` (a staging folder: publishing it is the
    caller's business, e.g. :func:`save_bundle` or a training run's partial folder); return the manifest."""
    expert_weights = [model_expert_weights(model, e) for e in range(len(model.experts))]
    for spec, weights in zip(model.experts, expert_weights):
        write_adapter(
            folder / "experts" / spec.name,
            weights,
            stored_base(model.base_ref),
            spec.record or {"anchor": _named(spec.anchor, model.objectives)},
            f"# LoRA expert `{spec.name}` of an HoE bundle\n",
            weights_dtype(model),
        )
    if model.routers:
        tensors = {}
        for name, layer in model.layers.items():
            tensors[f"{name}.router_weight"] = layer.router_weight.detach().contiguous()
            tensors[f"{name}.router_bias"] = layer.router_bias.detach().contiguous()
        order = json.dumps([s.name for s in model.experts])  # the E axis, checked on load
        save_file(tensors, str(folder / ROUTERS_FILE), metadata={"format": "pt", "experts": order})
    fingerprints = {s.name: expert_fingerprint(w) for s, w in zip(model.experts, expert_weights)}
    manifest = _manifest(model, fingerprints)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (folder / "README.md").write_text(_card(manifest))
    return manifest


def model_expert_weights(model: HoEModel, e: int) -> dict[str, LoraWeights]:
    """Expert ``e``'s factors in every module it adapts, as the model holds them."""
    return {n: w for n, layer in model.layers.items() if (w := layer.expert_weights(e)) is not None}


def _manifest(model: HoEModel, fingerprints: dict[str, dict]) -> dict:
    return {
        "format": FORMAT,
        "base": stored_base(model.base_ref),
        "objectives": model.objectives,
        "experts": [
            {"name": s.name, "anchor": _named(s.anchor, model.objectives), "path": f"experts/{s.name}"}
            for s in model.experts
        ],
        "routers": [
            {
                "name": r.name,
                "anchor": _named(r.anchor, model.objectives),
                "experts": list(r.experts),
                "fingerprint": {e: fingerprints[e] for e in r.experts},
            }
            for r in model.routers
        ],
        "command": command_line(),
        "versions": versions(),
    }


@dataclass
class BundleParts:
    """A bundle read and checked, the parts an :class:`~hoe.model.hoe_model.HoEModel` is made of
    (:meth:`HoEModel.from_pretrained <hoe.model.hoe_model.HoEModel.from_pretrained>` assembles them)."""

    base_model: torch.nn.Module
    base_ref: str
    objectives: list[str]
    experts: list[ExpertSpec]
    weights: list[dict[str, LoraWeights]]
    routers: list[RouterSpec]
    routers_file: Path  # their weights (:func:`load_router_weights`)


def read_bundle(
    bundle_dir: str | Path, base: str | None = None, dtype: torch.dtype = torch.float32
) -> BundleParts:
    """Read a bundle's manifest, experts and base model; ``base`` replaces the base model stored in its
    manifest (e.g. after it moved). Routers' fingerprints are checked before the base model loads."""
    folder = Path(bundle_dir)
    manifest = read_manifest(folder)
    objectives = manifest["objectives"]
    base_ref = str(base) if base else bundle_base(manifest["base"], folder)
    experts, weights = [], []
    for i, e in enumerate(manifest["experts"]):
        path = folder / e["path"]
        if not path.is_dir():
            raise _bad_manifest(
                folder / MANIFEST, f"experts[{i}].path", f"names {e['path']!r}, which is not a folder"
            )
        anchor = to_simplex(e["anchor"], objectives, f"experts[{i}].anchor")  # as routers' anchors are
        experts.append(ExpertSpec(e["name"], tuple(anchor.tolist()), read_record(path, "model") or {}))
        weights.append(read_adapter(path, "model"))
    _check_fingerprints(manifest, experts, weights, folder)
    routers = [
        RouterSpec(r["name"], _vector(r["anchor"], objectives), tuple(r["experts"]))
        for r in manifest.get("routers", [])
    ]
    base_model = load_base_model(base_ref, dtype)
    return BundleParts(base_model, base_ref, objectives, experts, weights, routers, folder / ROUTERS_FILE)


def _check_fingerprints(
    manifest: dict, experts: list[ExpertSpec], weights: list[dict[str, LoraWeights]], folder: Path
) -> None:
    """Every router that records what it mixes must find exactly those experts (before the base model loads).
    Routers of bundles written before fingerprints existed carry none and are loaded as they are."""
    routers = [r for r in manifest.get("routers", []) if "fingerprint" in r]
    if not routers:
        return
    by_name = dict(zip((e.name for e in experts), weights))
    cache: dict[str, dict] = {}
    for r in routers:
        current = {
            e: cache.setdefault(e, expert_fingerprint(by_name[e])) for e in r["experts"] if e in by_name
        }
        check_router(r["name"], r["fingerprint"], current, str(folder))


def load_base_model(ref: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The bundle's base causal LM (folder, built-in name or hub id), in eval mode."""
    from hoe.backbones import load_model

    return load_model(ref, dtype, "base")


def stored_base(ref: str | Path) -> str:
    """How a base reference is written in a manifest: a local folder as an absolute path (the bundle then
    loads from any directory); a built-in name or a Hugging Face id as given."""
    return stored_ref(ref)


def bundle_base(stored: str, folder: Path) -> str:
    """The base model to load for a bundle whose manifest stores ``stored``.

    An absolute folder must exist. A relative path (bundles written before paths were stored resolved) is
    taken relative to the bundle folder, never the current directory, so a folder of the same name elsewhere
    is never loaded by mistake; a built-in name or a hub id is returned as is.
    """
    path = Path(stored).expanduser()
    if path.is_absolute():
        if path.is_dir():
            return str(path)
        raise _base_not_found(stored, "")
    if (folder / path).is_dir():
        return str((folder / path).resolve())
    if _builtin_or_hub_id(stored):
        return stored
    raise _base_not_found(stored, f" (looked for it relative to the bundle folder {str(folder)!r})")


def _builtin_or_hub_id(ref: str) -> bool:
    import hoe.backbones  # noqa: F401  (registers the built-in models)
    from hoe.io.resolve import BUILTIN_MODELS

    return ref in BUILTIN_MODELS or (ref.count("/") == 1 and not ref.startswith((".", "/", "~")))


def _base_not_found(stored: str, where: str) -> CheckpointError:
    return CheckpointError(
        f"the bundle's stored base model {stored!r} was not found{where}.",
        field="base",
        value=stored,
        fix="Pass the base model the bundle was built on (a folder, built-in name or Hugging Face id).",
    )


def read_manifest(bundle_dir: str | Path) -> dict:
    """The manifest of a bundle folder, validated against :data:`MANIFEST_SCHEMA` (cheap: one JSON file)."""
    folder = Path(bundle_dir)
    path = folder / MANIFEST
    if not folder.is_dir():
        problem = "is a file, not a bundle folder" if folder.exists() else "does not exist"
        raise CheckpointError(
            f"{str(folder)!r} {problem}.",
            field="model",
            value=str(folder),
            fix=f"Pass the folder made by `hoe build` (it holds {MANIFEST}).",
        )
    if not path.is_file():
        raise CheckpointError(
            f"{str(folder)!r} has no {MANIFEST}.",
            field="model",
            value=str(folder),
            fix="Pass a folder made by `hoe build`.",
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        what = "is not valid JSON" if isinstance(e, json.JSONDecodeError) else "cannot be read"
        raise CheckpointError(
            f"{str(path)!r} {what} ({e}).",
            field="model",
            value=str(folder),
            fix="Rebuild the bundle with `hoe build`, or repair the file.",
        ) from None
    validate_manifest(manifest, path)
    return manifest


def load_router_weights(model: HoEModel, path: Path) -> None:
    """Copy the routers' weights from the bundle's ``routers.safetensors`` into ``model``, whose routers the
    manifest's are (in order)."""
    ckpt = Checkpoint(path.parent, "model") if path.is_file() else None
    if ckpt is None:
        raise CheckpointError(
            f"the manifest lists routers but {str(path)!r} is missing.",
            field="model",
            value=str(path.parent),
            fix="Rebuild the bundle with `hoe build`.",
        )
    _check_router_order(model, path)
    with torch.no_grad():
        for name, layer in model.layers.items():
            for attr in ("router_weight", "router_bias"):
                param = getattr(layer, attr)
                t = ckpt.get(f"{name}.{attr}")
                if t.shape != param.shape:
                    raise ShapeMismatchError(
                        f"{name}.{attr} in {str(path)!r} has shape {tuple(t.shape)}, expected "
                        f"{tuple(param.shape)}.",
                        field="model",
                        value=str(path.parent),
                        fix="The bundle is inconsistent; rebuild it with `hoe build`.",
                    )
                param.copy_(t)
    model.weights_changed()


def _check_router_order(model: HoEModel, path: Path) -> None:
    """The routers' weights index the experts (their E axis) in the order the bundle was written with, which
    ``routers.safetensors`` records (bundles written before it did are loaded as they are): a manifest whose
    experts were reordered would otherwise give every router's scores to the wrong experts."""
    stored = SafetensorsFile(path, "model").metadata.get("experts")
    names = [s.name for s in model.experts]
    try:
        order = None if stored is None else json.loads(stored)
    except ValueError:
        order = stored
    if order is not None and order != names:
        raise CheckpointError(
            f"{str(path)!r} holds the routers' weights for the experts in the order {order}, but the manifest "
            f"lists {names}.",
            field="model",
            value=str(path.parent),
            fix="List the experts in the manifest in the order the bundle was built with, or rebuild it with "
            "`hoe build`.",
        )


def validate_manifest(manifest: object, path: Path) -> None:
    """Raise :class:`CheckpointError` (field ``model``) naming the JSON path of the first bad field."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is not None:
        raise _bad_manifest(path, *_describe(error))
    assert isinstance(manifest, dict)  # the schema says so
    _check_references(manifest, path)


def _describe(error) -> tuple[str, str]:
    """(JSON path, what is wrong) of a schema error; a missing property is named in the path."""
    where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in error.absolute_path).lstrip(".")
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        return (f"{where}.{missing}" if where else missing), "is missing"
    if error.validator == "const":
        return where, f"is {error.instance!r}, expected {error.validator_value!r}"
    message = error.message if len(error.message) <= 120 else error.message[:117] + "..."
    return where, f"is invalid: {message}"


def _check_references(manifest: dict, path: Path) -> None:
    """What a schema cannot say: unique names, routers mixing listed experts, anchors over the objectives."""
    objectives = manifest["objectives"]
    names = [e["name"] for e in manifest["experts"]]
    for kind, items in (("experts", manifest["experts"]), ("routers", manifest.get("routers", []))):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item["name"] in seen:
                raise _bad_manifest(path, f"{kind}[{i}].name", f"repeats the name {item['name']!r}")
            seen.add(item["name"])
            unknown = sorted(set(item["anchor"]) - set(objectives))
            if unknown:
                raise _bad_manifest(path, f"{kind}[{i}].anchor", f"names unknown objectives {unknown}")
            if sum(item["anchor"].values()) <= 0:
                raise _bad_manifest(path, f"{kind}[{i}].anchor", "has no positive weight")
            unlisted = sorted(set(item.get("experts", [])) - set(names)) if kind == "routers" else []
            if unlisted:
                raise _bad_manifest(path, f"{kind}[{i}].experts", f"names unlisted experts {unlisted}")


def _bad_manifest(path: Path, where: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"{str(path)!r}: {where or 'the manifest'} {what}.",
        field="model",
        value=str(path.parent),
        fix="Rebuild the bundle with `hoe build`, or correct the manifest.",
    )


def weights_dtype(model: HoEModel) -> torch.dtype:
    layer = next(iter(model.layers.values()))
    return layer.lora_A.dtype


def _named(anchor: tuple[float, ...], objectives: list[str]) -> dict[str, float]:
    return {o: float(a) for o, a in zip(objectives, anchor)}


def _vector(anchor: dict[str, float], objectives: list[str]) -> tuple[float, ...]:
    return tuple(float(anchor.get(o, 0.0)) for o in objectives)


def _card(manifest: dict) -> str:
    rows = "\n".join(f"| expert | {e['name']} | {e['anchor']} |" for e in manifest["experts"])
    rows += "".join(f"\n| router | {r['name']} | {r['anchor']} |" for r in manifest["routers"])
    return (
        "# HoE bundle\n\n"
        f"Base model `{manifest['base']}`; objectives {manifest['objectives']}.\n\n"
        "| kind | name | anchor |\n|---|---|---|\n" + rows + "\n\n"
        "Load with `hoe.HoEModel.from_pretrained(folder)`; call `model.generate(ids, preference={...})`.\n"
        f"Made by `{manifest['command']}`.\n"
    )
