"""``hoe export --format adapter``: HoE without routers at λ as one standard PEFT LoRA adapter, for servers
that batch many adapters over one base model (vLLM, LoRAX, TGI) but take one adapter per request.

A weighted sum of LoRA experts is exactly one LoRA adapter of the summed rank:

    Σ_j w_j B_j A_j = [B_1 … B_k] · [w_1 A_1; …; w_k A_k]        rank Σ_j r_j

over the experts that preference routing reaches at λ (w_j > 0: at most m of them for m objectives, the
vertices of λ's cell). The gates are folded into A and the adapter is written with ``lora_alpha`` equal to its
rank, so PEFT's scaling is 1 and ``B A`` is the delta itself. Every module gets the same rank (servers size
their buffers by one rank, and not all of them read PEFT's ``rank_pattern``): expert j's block is as wide as
its largest rank over the modules, zero where it adapts a module with fewer rank rows or not at all. Router
experts mix per token, which one adapter cannot: they are left out, with the warning ``hoe export`` gives.

``--grid K`` writes one adapter per point of the 1/K simplex lattice and an ``index.json`` naming them;
:func:`nearest_adapter` tells a client which adapter serves its preference (the nearest grid point).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Sequence
from pathlib import Path

import torch

from hoe.errors import ConfigError
from hoe.io.adapters import LoraWeights
from hoe.preference import PreferenceLike, to_simplex

INDEX = "index.json"
INDEX_FORMAT = "hoe-adapters/1"
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM's ``--max-lora-rank`` accepts (``vllm.config.lora.MaxLoRARanks``)."""


def combined_adapter(
    experts: Sequence[dict[str, LoraWeights]], weights: Sequence[float]
) -> tuple[dict[str, LoraWeights], int]:
    """One adapter equal to Σ_j w_j B_j A_j over the experts with w_j > 0: ({module: factors}, rank).

    ``experts``: each expert's factors by module; ``weights``: (E,) w⁽²⁾. Expert j's block has width
    R_j = max over modules of its rank; rows of A (and columns of B) past its rank in a module, or in a module
    it does not adapt, are zero. Every module's rank is Σ_j R_j.
    """
    used = [(float(w), f) for w, f in zip(weights, experts) if w > 0 and f]
    if not used:
        raise ConfigError(
            "no LoRA expert has weight at this preference.",
            field="preference",
            fix="Pass another preference.",
        )
    widths = [max(x.rank for x in f.values()) for _, f in used]
    rank = sum(widths)
    modules = sorted({m for _, f in used for m in f})
    out = {}
    for module in modules:
        ref = next(f[module] for _, f in used if module in f)
        a = ref.A.new_zeros(rank, ref.A.shape[1], dtype=torch.float32)
        b = ref.B.new_zeros(ref.B.shape[0], rank, dtype=torch.float32)
        start = 0
        for (w, f), width in zip(used, widths):
            if module in f:
                r = f[module].rank
                a[start : start + r] = w * f[module].A.float()  # the gate folded into A
                b[:, start : start + r] = f[module].B.float()
            start += width
        out[module] = LoraWeights(A=a, B=b, transposed=ref.transposed)
    return out, rank


def adapter_name(lam: torch.Tensor, objectives: Sequence[str]) -> str:
    """``relevance0.5-positivity0.25-brevity0.25``: the preference, readable, a valid folder and model name."""
    return "-".join(f"{o}{float(x):.4g}" for o, x in zip(objectives, lam))


def experts_digest(fingerprints: dict[str, dict]) -> str:
    """A digest of the bundle's experts (their fingerprints by name, in order): adapters made from other
    experts have another."""
    return hashlib.sha256(json.dumps(fingerprints, sort_keys=False).encode()).hexdigest()[:16]


def vllm_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds ``rank``."""
    for r in VLLM_RANKS:
        if r >= rank:
            return r
    raise ConfigError(
        f"an adapter of rank {rank} exceeds vLLM's largest --max-lora-rank ({VLLM_RANKS[-1]}).",
        field="grid",
        value=rank,
        fix="Build the bundle from experts of lower rank.",
    )


def vllm_command(index: dict, folder: str | Path, base: str | None = None) -> str:
    """The ``vllm serve`` line serving every adapter of ``index`` (folders relative to ``folder``) over
    ``base`` (default: the index's)."""
    folder = Path(folder)
    modules = " ".join(shlex.quote(f"{name}={folder / a['path']}") for name, a in index["adapters"].items())
    rank = vllm_rank(max(a["rank"] for a in index["adapters"].values()))
    return (
        f"vllm serve {shlex.quote(base or index['base'])} --enable-lora --max-lora-rank {rank} "
        f"--max-loras {min(len(index['adapters']), 8)} --lora-modules {modules}"
    )


def read_index(path: str | Path) -> dict:
    """An ``index.json`` (or the folder holding it), checked to be one ``hoe export --format adapter`` wrote."""
    path = Path(path)
    path = path / INDEX if path.is_dir() else path
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot read {str(path)!r} ({e}).",
            field="index",
            value=str(path),
            fix="Pass the index.json that hoe export --format adapter --grid K wrote.",
        ) from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not index.get("adapters"):
        raise ConfigError(
            f"{str(path)!r} is not an adapter index ({INDEX_FORMAT}).",
            field="index",
            value=str(path),
            fix="Pass the index.json that hoe export --format adapter --grid K wrote.",
        )
    return index


def nearest_adapter(index: dict | str | Path, preference: PreferenceLike) -> str:
    """The name of the adapter of ``index`` (a dict, an ``index.json`` or its folder) whose preference is
    nearest to ``preference`` (Euclidean on the simplex; the first listed among equals): what a client puts
    in a request's ``model`` field."""
    if not isinstance(index, dict):
        index = read_index(index)
    objectives = index["objectives"]
    lam = to_simplex(preference, objectives)
    names = list(index["adapters"])
    points = torch.tensor(
        [[index["adapters"][n]["preference"][o] for o in objectives] for n in names], dtype=torch.float64
    )
    return names[int(torch.linalg.vector_norm(points - lam, dim=-1).argmin())]


def export_adapters(
    model: str | Path,
    preferences: torch.Tensor,
    out: str | Path,
    dtype: str | None = None,
    overwrite: bool = False,
    index: bool = True,
) -> Path:
    """Write the bundle ``model`` at each preference of ``preferences`` (k, m) as a PEFT LoRA adapter: with
    ``index`` one folder per preference under ``out`` and ``out/index.json``, else (k = 1) the adapter in
    ``out`` itself. Atomic: a failure leaves no folder; an existing one is replaced only with ``overwrite``.

    ``dtype``: of the saved factors (default: the experts' own).
    """
    from hoe.bundle.fingerprint import exact, expert_fingerprint
    from hoe.bundle.folder import bundle_base, read_manifest, stored_base
    from hoe.dtypes import parse_dtype
    from hoe.export.routing import lora_only_weights, warn_if_routed
    from hoe.io.adapters import read_adapter, write_adapter
    from hoe.io.atomic import atomic_output_dir, check_output_dir
    from hoe.io.resolve import BUILTIN_MODELS, resolve_model_dir
    from hoe.provenance import command_line, versions

    folder = Path(model)
    manifest = read_manifest(folder)
    objectives = manifest["objectives"]
    out_dtype = parse_dtype(dtype) if dtype is not None else None
    base_ref = bundle_base(manifest["base"], folder)
    check_output_dir(out, overwrite, "out", {"model": folder, "base": base_ref})  # before anything loads
    experts = [read_adapter(folder / e["path"], "model") for e in manifest["experts"]]
    names = [e["name"] for e in manifest["experts"]]
    if out_dtype is None:
        out_dtype = next(iter(experts[0].values())).A.dtype
    listing = {
        "format": INDEX_FORMAT,
        "bundle": str(folder.resolve()),
        "base": stored_base(base_ref),
        "objectives": objectives,
        "experts_digest": experts_digest({n: exact(expert_fingerprint(w)) for n, w in zip(names, experts)}),
        "adapters": {},
        "command": command_line(),
        "versions": versions(),
    }
    with atomic_output_dir(out, overwrite, "out") as tmp:
        for lam in preferences:
            weights = lora_only_weights(manifest, lam)  # HoE without routers
            warn_if_routed(manifest, lam, "one adapter")
            factors, rank = combined_adapter(experts, weights)
            name = adapter_name(lam, objectives)
            if name in listing["adapters"]:  # 4 significant digits tell lattice points apart up to grid ~5000
                raise ConfigError(
                    f"two preferences are named {name!r}.", field="grid", fix="Pass a smaller grid."
                )
            mixed = {n: float(w) for n, w in zip(names, weights) if w > 0}
            record = {
                "format": "hoe-export-adapter/1",
                "anchor": dict(zip(objectives, lam.tolist())),  # `hoe build` may take it as an expert at λ
                "bundle": listing["bundle"],
                "expert_weights": mixed,
                "routers_left_out": [r["name"] for r in manifest.get("routers", [])],
                "command": listing["command"],
                "versions": listing["versions"],
            }
            card = (
                f"# HoE without routers at {name}\n\nOne LoRA adapter of rank {rank} equal to "
                f"{' + '.join(f'{w:.4g}·{n}' for n, w in mixed.items())} (`hoe export --format adapter`).\n"
            )
            write_adapter(tmp / name if index else tmp, factors, listing["base"], record, card, out_dtype)
            path = name if index else "."
            listing["adapters"][name] = {"preference": record["anchor"], "rank": rank, "path": path}
        if index:  # a built-in base (no hub id) is served from its converted local folder
            serve_base = str(resolve_model_dir(base_ref)) if base_ref in BUILTIN_MODELS else None
            listing["vllm"] = vllm_command(listing, Path(out).resolve(), serve_base)
            (tmp / INDEX).write_text(json.dumps(listing, indent=2) + "\n", encoding="utf-8")
    return Path(out)
