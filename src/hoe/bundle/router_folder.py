"""One trained router expert on its own, small enough to commit, and attached to a bundle rebuilt from the
same LoRA experts.

    router/
      hoe_router.json          format, name, anchor, the experts it mixes, and the name and fingerprint of
                               every expert of the bundle it was trained in (in bundle order)
      router.safetensors       per adapted module: ``<module>.router_weight`` (E, in), ``.router_bias`` (E,)
      README.md                the router's card (its training section of the bundle card)
      hoe_router_training.json the training record, when the bundle has the one of this router

A router's weights score the bundle's LoRA experts by position, so :func:`attach_router` accepts a router only
in a model whose experts are exactly those it was trained with (same names, order and fingerprints; see
:mod:`hoe.bundle.fingerprint`) and otherwise raises :class:`~hoe.errors.CheckpointError` naming both sides.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from hoe.bundle.fingerprint import check_router, expert_fingerprint
from hoe.errors import CheckpointError, ConfigError
from hoe.io.atomic import atomic_output_dir, refuse_inputs

if TYPE_CHECKING:  # attach_router takes the model; typing only
    from hoe.model.hoe_model import HoEModel

ROUTER_MANIFEST = "hoe_router.json"
ROUTER_FORMAT = "hoe-router/1"
ROUTER_FILE = "router.safetensors"
TRAINING_RECORD = "hoe_router_training.json"  # hoe.training.router.card.ROUTER_RECORD


def save_router(
    model: str | Path,
    name: str,
    out: str | Path,
    overwrite: bool = False,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write router ``name`` of the bundle folder ``model`` to the router folder ``out`` (``dtype``: float16
    by default, half the size; the router's logits change by float16 rounding only).

    Reads the bundle's manifest and ``routers.safetensors`` only; the base model is not loaded.
    """
    from hoe.bundle.folder import ROUTERS_FILE, read_manifest

    folder = Path(model)
    refuse_inputs(out, {"model": folder})
    manifest = read_manifest(folder)
    names = [r["name"] for r in manifest.get("routers", [])]
    if name not in names:
        raise ConfigError(
            f"the bundle {str(folder)!r} has no router named {name!r}.",
            field="name",
            value=name,
            fix=f"Name one of its routers {names}." if names else "Train one first (hoe train-router).",
        )
    index, entry = names.index(name), manifest["routers"][names.index(name)]
    stacked = load_file(str(folder / ROUTERS_FILE))
    tensors = {key: t[index].to(dtype).contiguous() for key, t in stacked.items()}
    with atomic_output_dir(out, overwrite) as tmp:
        save_file(tensors, str(tmp / ROUTER_FILE), metadata={"format": "pt"})
        record = {
            "format": ROUTER_FORMAT,
            "name": name,
            "anchor": entry["anchor"],
            "experts": entry["experts"],
            "bundle_experts": _bundle_fingerprints(folder, manifest),
        }
        (tmp / ROUTER_MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
        _copy_card(folder, name, tmp)
    return Path(out)


def _copy_card(folder: Path, name: str, tmp: Path) -> None:
    """The router's training record and its section of the bundle card, when ``name`` is what they describe."""
    training = folder / TRAINING_RECORD
    if training.is_file() and json.loads(training.read_text()).get("router") == name:
        shutil.copy2(training, tmp / TRAINING_RECORD)
    card = (folder / "README.md").read_text() if (folder / "README.md").is_file() else ""
    marker = f"## Router expert `{name}`"
    section = card[card.index(marker) + len(marker) :] if marker in card else "\n"
    section = section.split("\nThe per-step log")[0]  # what follows is about the bundle's own files
    if (tmp / TRAINING_RECORD).is_file():
        section += f"\nThe training record with the per-step log is `{TRAINING_RECORD}`.\n"
    (tmp / "README.md").write_text(
        f"# Router expert `{name}`\n\nAttach it to a bundle built from the same LoRA experts with "
        f"`hoe build ... --router-from FOLDER` (`trained_routers=[FOLDER]` in Python).\n{section}"
    )


def _bundle_fingerprints(folder: Path, manifest: dict) -> dict[str, dict]:
    """Name -> fingerprint of every expert of the bundle, in its order (measured from the files)."""
    from hoe.io.adapters import read_adapter

    return {
        e["name"]: expert_fingerprint(read_adapter(folder / e["path"], "model")) for e in manifest["experts"]
    }


def _bad_folder(folder: Path, problem: str, fix: str = "Write the router folder again with hoe save-router."):
    return CheckpointError(problem, field="router_from", value=str(folder), fix=fix)


def read_router(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The record and tensors of a router folder; a clear error when it is not one."""
    folder = Path(path)
    record_path = folder / ROUTER_MANIFEST
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        raise _bad_folder(
            folder,
            f"{str(folder)!r} is not a router folder (no {ROUTER_MANIFEST}).",
            "Pass a folder written by hoe save-router.",
        ) from None
    except (OSError, ValueError) as e:
        raise _bad_folder(folder, f"{str(record_path)!r} cannot be read: {e}.") from None
    required = ("name", "anchor", "experts", "bundle_experts")
    if (
        not isinstance(record, dict)
        or record.get("format") != ROUTER_FORMAT
        or any(k not in record for k in required)
    ):
        raise _bad_folder(
            folder, f"{str(record_path)!r} is not a {ROUTER_FORMAT} record with {', '.join(required)}."
        )
    if not (folder / ROUTER_FILE).is_file():
        raise _bad_folder(folder, f"{str(folder)!r} has no {ROUTER_FILE}.")
    return record, load_file(str(folder / ROUTER_FILE))


def attach_router(model: HoEModel, path: str | Path, weights: list[dict] | None = None) -> str:
    """Add the trained router in folder ``path`` to ``model``; return its name.

    ``weights``: the model's expert factors, one dict per expert (computed from the model when omitted), whose
    fingerprints must equal those the router was trained with, name by name and in order.
    """
    from hoe.bundle.folder import model_expert_weights

    record, tensors = read_router(path)
    if weights is None:
        weights = [model_expert_weights(model, e) for e in range(len(model.experts))]
    current = {s.name: expert_fingerprint(w) for s, w in zip(model.experts, weights)}
    stored = record["bundle_experts"]
    if list(stored) != list(current):
        raise CheckpointError(
            f"router {record['name']!r} in {str(path)!r} was trained in a bundle with the experts "
            f"{list(stored)}, but this one has {list(current)}.",
            field="router_from",
            value=str(path),
            fix="Build the bundle from the same LoRA experts, in the same order, as the router's.",
        )
    check_router(record["name"], stored, current, str(path), field="router_from")
    model.add_router(record["name"], record["anchor"], record["experts"])
    with torch.no_grad():
        for module, layer in model.layers.items():
            for attr in ("router_weight", "router_bias"):
                param = getattr(layer, attr)
                t = tensors.get(f"{module}.{attr}")
                if t is None or t.shape != param.shape[1:]:
                    shape = tuple(param.shape[1:])
                    raise _bad_folder(Path(path), f"{str(path)!r} holds no {module}.{attr} of shape {shape}.")
                param[-1].copy_(t)
    model.weights_changed()
    return record["name"]
