"""HoE bundles on disk: a folder with a JSON manifest and safetensors, no pickle.

    bundle/
      hoe_bundle.json          manifest: format, base model reference, objectives, experts and routers with
                               their anchors, versions, the command that made it
      experts/<name>/          one standard PEFT LoRA adapter per expert (+ its hoe_expert.json record)
      routers.safetensors      per adapted module: ``<module>.router_weight`` (R, E, in), ``.router_bias`` (R, E)
      README.md                a card

Loading validates everything (manifest fields, expert shapes against the base, router shapes) before the model
is returned, so a bad bundle raises a clear error and nothing is half-loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from hoe.errors import CheckpointError, ShapeMismatchError
from hoe.io.adapters import read_adapter, read_record, write_adapter
from hoe.io.atomic import atomic_output_dir
from hoe.io.checkpoint import Checkpoint
from hoe.model.hoe_model import ExpertSpec, HoEModel
from hoe.provenance import command_line, versions

MANIFEST = "hoe_bundle.json"
FORMAT = "hoe-bundle/1"
ROUTERS_FILE = "routers.safetensors"


def save_bundle(model: HoEModel, bundle_dir: str | Path, overwrite: bool = False) -> Path:
    with atomic_output_dir(bundle_dir, overwrite, "out") as tmp:
        for e, spec in enumerate(model.experts):
            weights = {
                n: w for n, layer in model.layers.items() if (w := layer.expert_weights(e)) is not None
            }
            write_adapter(
                tmp / "experts" / spec.name,
                weights,
                model.base_ref,
                spec.record or {"anchor": {}},
                f"# LoRA expert `{spec.name}` of an HoE bundle\n",
                weights_dtype(model),
            )
        if model.routers:
            tensors = {}
            for name, layer in model.layers.items():
                tensors[f"{name}.router_weight"] = layer.router_weight.detach().contiguous()
                tensors[f"{name}.router_bias"] = layer.router_bias.detach().contiguous()
            save_file(tensors, str(tmp / ROUTERS_FILE), metadata={"format": "pt"})
        manifest = {
            "format": FORMAT,
            "base": model.base_ref,
            "objectives": model.objectives,
            "experts": [
                {"name": s.name, "anchor": _named(s.anchor, model.objectives), "path": f"experts/{s.name}"}
                for s in model.experts
            ],
            "routers": [
                {"name": r.name, "anchor": _named(r.anchor, model.objectives), "experts": list(r.experts)}
                for r in model.routers
            ],
            "command": command_line(),
            "versions": versions(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / "README.md").write_text(_card(manifest))
    return Path(bundle_dir)


def load_bundle(
    bundle_dir: str | Path,
    base: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> HoEModel:
    folder = Path(bundle_dir)
    manifest = read_manifest(folder)
    objectives = manifest["objectives"]
    experts, weights = [], []
    for e in manifest["experts"]:
        path = folder / e["path"]
        experts.append(
            ExpertSpec(e["name"], _vector(e["anchor"], objectives, folder), read_record(path) or {})
        )
        weights.append(read_adapter(path, "model"))
    base_ref = base or manifest["base"]
    model = HoEModel(load_base_model(base_ref, dtype), objectives, experts, weights, base_ref)
    for r in manifest.get("routers", []):
        model.add_router(r["name"], _vector(r["anchor"], objectives, folder), r["experts"])
    if model.routers:
        _load_routers(model, folder / ROUTERS_FILE)
    return model.to(device) if device is not None else model


def load_base_model(ref: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The bundle's base causal LM (folder, built-in name or hub id), in eval mode."""
    from hoe.backbones import load_model

    return load_model(ref, dtype, "base")


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"--model: {str(folder)!r} has no {MANIFEST}; pass a folder made by `hoe build`."
        ) from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"--model: {str(path)!r} is not valid JSON ({e}).") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(
            f"--model: {str(path)!r} has format {manifest.get('format')!r}; expected {FORMAT!r}."
        )
    missing = [k for k in ("base", "objectives", "experts") if k not in manifest]
    if missing:
        raise CheckpointError(f"--model: {str(path)!r} lacks the field(s) {missing}.")
    return manifest


def _load_routers(model: HoEModel, path: Path) -> None:
    ckpt = Checkpoint(path.parent, "model") if path.is_file() else None
    if ckpt is None:
        raise CheckpointError(f"--model: the manifest lists routers but {str(path)!r} is missing.")
    with torch.no_grad():
        for name, layer in model.layers.items():
            for attr in ("router_weight", "router_bias"):
                param = getattr(layer, attr)
                t = ckpt.get(f"{name}.{attr}")
                if t.shape != param.shape:
                    raise ShapeMismatchError(
                        f"--model: {name}.{attr} has shape {tuple(t.shape)}, expected "
                        f"{tuple(param.shape)}; the bundle is inconsistent."
                    )
                param.copy_(t)


def weights_dtype(model: HoEModel) -> torch.dtype:
    layer = next(iter(model.layers.values()))
    return layer.lora_A.dtype


def _named(anchor: tuple[float, ...], objectives: list[str]) -> dict[str, float]:
    return {o: float(a) for o, a in zip(objectives, anchor)}


def _vector(anchor: dict[str, float], objectives: list[str], folder: Path) -> tuple[float, ...]:
    unknown = set(anchor) - set(objectives)
    if unknown:
        raise CheckpointError(
            f"--model: anchor {anchor} in {str(folder)!r} names unknown objectives {sorted(unknown)}."
        )
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
