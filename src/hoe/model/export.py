"""``hoe export``: a plain Hugging Face checkpoint of an HoE bundle at one preference.

For serving one fixed trade-off with engines that know nothing of HoE (vLLM, TGI, ``transformers`` alone):

    W' = W + Σ_j w_j B_j A_j        w: what preference routing gives λ over the bundle's LoRA experts

in every adapted module, written into the base model's weights and saved with its tokenizer. Router experts
mix the LoRA experts per token, which a plain weight cannot: they are left out (the export is HoE without
routers at λ, the ``hoe-lora`` of ``hoe evaluate``), with a warning when λ would have reached one.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from hoe.errors import HoEWarning, bad_value
from hoe.io.atomic import atomic_output_dir, check_output_dir
from hoe.preference import PreferenceLike, to_simplex

EXPORT_RECORD = "hoe_export.json"


def export(
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
    from hoe.evaluation.mixtures import lora_only_weights
    from hoe.experts.extract import DTYPES
    from hoe.model.bundle import bundle_base, load_base_model, read_manifest
    from hoe.model.generation import load_tokenizer
    from hoe.model.hoe_model import HoEModel
    from hoe.provenance import command_line, versions

    folder = Path(model)
    manifest = read_manifest(folder)
    names = manifest["objectives"]
    lam = to_simplex(preference, names)
    if dtype is not None and dtype not in DTYPES:
        raise bad_value("dtype", dtype, f"Choose among {list(DTYPES)}.")
    check_output_dir(out, overwrite, "out")  # before anything loads
    hoe = HoEModel.from_pretrained(folder)
    weights = lora_only_weights(hoe, lam)  # (E,)
    _warn_if_routed(hoe, lam)
    base_ref = bundle_base(manifest["base"], folder)
    base = load_base_model(base_ref, DTYPES[dtype] if dtype else torch.float32)
    merge_into(base, hoe, weights)
    if dtype is None:
        base.to(_checkpoint_dtype(base))
    record = {
        "format": "hoe-export/1",
        "bundle": str(folder.resolve()),
        "preference": dict(zip(names, lam.tolist())),
        "expert_weights": {e.name: float(w) for e, w in zip(hoe.experts, weights) if w > 0},
        "routers_left_out": [r.name for r in hoe.routers],
        "command": command_line(),
        "versions": versions(),
    }
    with atomic_output_dir(out, overwrite, "out") as tmp:
        base.save_pretrained(tmp, safe_serialization=True)
        load_tokenizer(base_ref).save_pretrained(tmp)
        (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return Path(out)


def merge_into(base: torch.nn.Module, hoe, weights: torch.Tensor) -> None:
    """Add Σ_j w_j B_j A_j of ``hoe``'s LoRA experts to ``base``'s weights (same module names)."""
    modules = dict(base.named_modules())
    with torch.no_grad():
        for name, layer in hoe.layers.items():
            gate = weights[layer.rank_owner].to(layer.lora_A)  # (Σr,)
            delta = (layer.lora_B * gate) @ layer.lora_A  # (out, in)
            target = modules[name].weight
            target += (delta.T if layer.transposed else delta).to(target)


def _warn_if_routed(hoe, lam: torch.Tensor) -> None:
    if not hoe.routers:
        return
    e = len(hoe.experts)
    used = [r.name for r, w in zip(hoe.routers, hoe.routing_weights(lam)[0, e:].tolist()) if w > 0]
    if used:
        warnings.warn(
            f"the router experts {used} would mix the LoRA experts token by token at this preference; a plain "
            "checkpoint cannot, so the export routes the preference over the LoRA experts alone (HoE without "
            "routers). Serve the bundle with `hoe serve` to keep token-level routing.",
            HoEWarning,
            stacklevel=3,
        )


def _checkpoint_dtype(model: torch.nn.Module) -> torch.dtype:
    dtype = getattr(model.config, "torch_dtype", None) or getattr(model.config, "dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32
