"""``hoe merge``: multi-objective LoRA experts by merging single-objective ones (METHOD.md §2(a).2).

τ_λ = Merge({ΔW_i}, λ) per module on full deltas, then task-SVD to rank r. The new expert's anchor
preference over *objectives* is Σ_i λ_i · anchor_i, so merged experts can themselves be merged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hoe.conventions import Rank
from hoe.dtypes import parse_dtype
from hoe.errors import ShapeMismatchError
from hoe.experts.extract import check_rank_fits, energy_summary, expert_card, validate_names
from hoe.experts.merging import get_merge_method, resolve_options
from hoe.experts.targets import TargetModule
from hoe.experts.task_svd import task_svd, validate_rank, validate_svd
from hoe.experts.task_vectors import Compressed
from hoe.io.adapters import LoraWeights, read_adapter, read_adapter_config, read_record, write_adapter
from hoe.io.atomic import atomic_output_dir, check_output_dir
from hoe.io.resolve import stored_ref
from hoe.preference import PreferenceLike, to_simplex
from hoe.provenance import command_line, versions


def merge(
    expert: Mapping[str, str | Path],
    preference: PreferenceLike,
    rank: Rank,
    out: str | Path,
    method: str = "pcb",
    svd: str = "auto",
    dtype: str = "float32",
    overwrite: bool = False,
    progress: bool = True,
    **method_options: float,
) -> Path:
    """Merge the LoRA experts ``expert`` (name -> adapter folder) at ``preference`` (over those names) with
    ``method`` into one rank-``rank`` LoRA expert written to ``out``. Returns ``out``.

    ``method_options`` are checked against the options ``method`` declares (see :mod:`hoe.experts.merging`)
    before any work, and recorded with the defaults filled in.
    """
    validate_names(expert, "expert")
    names = list(expert)
    lam = to_simplex(preference, names, "preference")
    merge_fn = get_merge_method(method)
    options = resolve_options(method, method_options)
    rank = validate_rank(rank)
    svd = validate_svd(svd, rank)
    out_dtype = parse_dtype(dtype)
    check_output_dir(out, overwrite, inputs={"expert": list(expert.values())})
    weights = {name: read_adapter(Path(folder), field="expert") for name, folder in expert.items()}
    modules = _module_union(weights)
    check_rank_fits(rank, list(modules.values()))
    anchor = merged_anchor(expert, lam)
    base = read_adapter_config(Path(expert[names[0]]), field="expert").get("base_model_name_or_path") or ""
    with atomic_output_dir(out, overwrite) as tmp:
        compressed: Compressed = {}
        for m in tqdm(modules.values(), desc=f"merge ({method})", unit="module", disable=not progress):
            deltas = torch.stack([_delta(weights[n], m) for n in names])  # (n, out, in)
            merged = merge_fn(deltas, lam.to(deltas.dtype), **options)
            lr = task_svd(merged, rank, svd)
            compressed[m.name] = (LoraWeights(A=lr.A, B=lr.B, transposed=m.transposed), lr.energy)
        record = {
            "format": "hoe-expert/1",
            "kind": "merged",
            "anchor": anchor,
            "preference": {n: float(w) for n, w in zip(names, lam)},
            "method": method,
            "method_options": options,
            "sources": {n: stored_ref(p) for n, p in expert.items()},  # local folders absolute
            "base": base,
            "rank": rank,
            "svd": svd,
            **energy_summary(compressed),
            "command": command_line(),
            "versions": versions(),
        }
        write_adapter(
            tmp,
            {m: w for m, (w, _) in compressed.items()},
            base,
            record,
            expert_card(Path(out).name, record),
            out_dtype,
        )
    return Path(out)


def merged_anchor(expert: Mapping[str, str | Path], lam: torch.Tensor) -> dict[str, float]:
    """Σ_i λ_i · anchor_i over objectives; an expert without a record is the vertex of its own name."""
    anchor: dict[str, float] = {}
    for (name, folder), w in zip(expert.items(), lam.tolist()):
        record = read_record(folder, field="expert") or {}
        for objective, a in record.get("anchor", {name: 1.0}).items():
            anchor[objective] = anchor.get(objective, 0.0) + w * a
    return {k: round(v, 12) for k, v in anchor.items()}


def _module_union(weights: dict[str, dict[str, LoraWeights]]) -> dict[str, TargetModule]:
    """All modules adapted by any expert; the experts must agree on each module's shape.

    A disagreement names both experts and both shapes: which one is wrong cannot be told from the experts
    alone (merge has no base model), so blaming the second one seen would mislead.
    """
    modules: dict[str, TargetModule] = {}
    owner: dict[str, str] = {}  # module -> the expert whose shape was seen first
    for name, ws in weights.items():
        for module, w in ws.items():
            m = TargetModule(module, w.B.shape[0], w.A.shape[1], w.transposed)
            first = modules.setdefault(module, m)
            owner.setdefault(module, name)
            if first != m:
                raise ShapeMismatchError(
                    f"experts {owner[module]!r} and {name!r} disagree on module {module}: (out, in) = "
                    f"{_shape(first)} vs {_shape(m)}.",
                    field="expert",
                    fix="Merge experts of the same base model.",
                )
    return dict(sorted(modules.items()))


def _shape(m: TargetModule) -> str:
    return f"{(m.out_features, m.in_features)}{' (Conv1D)' if m.transposed else ''}"


def _delta(ws: dict[str, LoraWeights], m: TargetModule) -> torch.Tensor:
    w = ws.get(m.name)
    return w.delta() if w is not None else torch.zeros(m.out_features, m.in_features)
