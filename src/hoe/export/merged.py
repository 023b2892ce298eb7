"""``hoe export``: a plain Hugging Face checkpoint of an HoE bundle at one preference.

For serving one fixed trade-off with engines that know nothing of HoE (vLLM, TGI, ``transformers`` alone):

    W' = W + Σ_j w_j B_j A_j        w: what preference routing gives λ over the bundle's LoRA experts

in every adapted module, written into the base model's weights and saved with its tokenizer. Router experts
mix the LoRA experts per token, which a plain weight cannot: they are left out (the export is HoE without
routers at λ, the ``hoe-lora`` of ``hoe evaluate``), with a warning when λ would have reached one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hoe.errors import bad_value
from hoe.export.routing import lora_only_weights, warn_if_routed
from hoe.io.atomic import atomic_output_dir, check_output_dir
from hoe.preference import PreferenceLike, to_simplex

EXPORT_RECORD = "hoe_export.json"


def export_merged(
    model: str | Path,
    preference: PreferenceLike,
    out: str | Path,
    dtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the bundle ``model`` merged at ``preference`` to the folder ``out`` (atomically: a failure leaves
    no folder, and an existing one is replaced only with ``overwrite`` once the new one is complete).

    ``dtype``: of the saved weights (default: the base model's checkpoint dtype, else float32).
    """
    from hoe.bundle.folder import bundle_base, load_base_model, read_manifest
    from hoe.dtypes import DTYPES
    from hoe.generation.text import load_tokenizer
    from hoe.io.adapters import read_adapter
    from hoe.provenance import command_line, versions

    folder = Path(model)
    manifest = read_manifest(folder)
    names = manifest["objectives"]
    lam = to_simplex(preference, names)
    if dtype is not None and dtype not in DTYPES:
        raise bad_value("dtype", dtype, f"Choose among {list(DTYPES)}.")
    base_ref = bundle_base(manifest["base"], folder)
    check_output_dir(out, overwrite, "out", {"model": folder, "base": base_ref})  # before anything loads
    experts, routers = manifest["experts"], manifest["routers"]
    weights = lora_only_weights(manifest, lam)  # HoE without routers
    warn_if_routed(manifest, lam, "a plain checkpoint")
    base = load_base_model(base_ref, DTYPES[dtype] if dtype else _checkpoint_dtype(base_ref))
    # only the experts' adapters are read: one base model in memory, merged in place
    merge_into(
        base, [(float(w), read_adapter(folder / e["path"])) for e, w in zip(experts, weights) if w > 0]
    )
    record = {
        "format": "hoe-export/1",
        "bundle": str(folder.resolve()),
        "preference": dict(zip(names, lam.tolist())),
        "expert_weights": {e["name"]: float(w) for e, w in zip(experts, weights) if w > 0},
        "routers_left_out": [r["name"] for r in routers],
        "command": command_line(),
        "versions": versions(),
    }
    with atomic_output_dir(out, overwrite, "out") as tmp:
        base.save_pretrained(tmp, safe_serialization=True)
        load_tokenizer(base_ref).save_pretrained(tmp)
        (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return Path(out)


def merge_into(base: torch.nn.Module, parts) -> None:
    """Add Σ_j w_j B_j A_j to ``base``'s weights; ``parts``: (w_j, {module: LoraWeights}) per expert."""
    modules = dict(base.named_modules())
    with torch.no_grad():
        for w, factors in parts:
            for name, f in factors.items():
                target = modules[name].weight
                delta = w * f.delta()  # (out, in); transposed below for GPT-2's Conv1D
                target += (delta.T if f.transposed else delta).to(target)


def _checkpoint_dtype(base_ref: str) -> torch.dtype:
    """The dtype the base checkpoint is stored in (its config.json), float32 if it does not say."""
    from hoe.io.resolve import resolve_model_dir

    try:
        config = json.loads((resolve_model_dir(base_ref, "model") / "config.json").read_text())
    except (OSError, ValueError):
        return torch.float32
    name = config.get("dtype") or config.get("torch_dtype")
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    return dtype if isinstance(dtype, torch.dtype) else torch.float32
