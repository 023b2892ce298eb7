"""``hoe extract``: single-objective LoRA experts from fine-tuned models (METHOD.md §2(a).1)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from hoe.conventions import Rank
from hoe.dtypes import parse_dtype
from hoe.errors import ConfigError, ShapeMismatchError, bad_value
from hoe.experts.targets import TargetModule, find_target_modules, linear_modules, skeleton_from_config
from hoe.experts.task_svd import validate_rank, validate_svd
from hoe.experts.task_vectors import AdapterTaskVector, CheckpointTaskVector, Compressed
from hoe.io.adapters import is_peft_adapter, write_adapter
from hoe.io.atomic import atomic_children, check_children
from hoe.io.checkpoint import Checkpoint
from hoe.io.resolve import resolve_model_dir, stored_ref
from hoe.provenance import command_line, versions

DEFAULT_SPARSITY = 0.2
"""Fraction of smallest-magnitude task-vector entries dropped before the SVD (the paper's ``min_ratio``)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Source = CheckpointTaskVector | AdapterTaskVector


def extract(
    base: str,
    tuned: Mapping[str, str | Path],
    rank: Rank,
    out: str | Path,
    sparsity: float | None = None,
    targets: list[str] | None = None,
    svd: str = "auto",
    dtype: str = "float32",
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Compress each fine-tuned model in ``tuned`` (objective name -> folder, hub id or PEFT adapter) into a
    rank-``rank`` LoRA expert, written as ``out/<name>/`` (a PEFT adapter folder). Returns those folders.

    ``sparsity``: fraction of the smallest |τ| dropped globally before the SVD; default 0.2 for full
    checkpoints (as the paper) and 0 for LoRA adapters (whose delta is already low-rank).
    """
    rank = validate_rank(rank)
    validate_names(tuned, "tuned")
    svd = validate_svd(svd, rank)
    out_dtype = parse_dtype(dtype)
    if sparsity is not None:
        validate_sparsity(sparsity)
    check_children(out, tuned, overwrite, inputs={"tuned": list(tuned.values()), "base": base})
    base_ckpt = Checkpoint(resolve_model_dir(base, field="base"), field="base")
    skeleton = skeleton_from_config(base_ckpt.config())
    all_linear = linear_modules(skeleton)
    modules = find_target_modules(skeleton, targets)
    _check_base(base_ckpt, modules)
    sources = {
        name: _source(name, ref, base_ckpt, modules, all_linear, targets) for name, ref in tuned.items()
    }
    sparsities = {name: _sparsity(sparsity, src) for name, src in sources.items()}
    for name, src in sources.items():
        check_source_rank(rank, src, sparsities[name])
    with atomic_children(out, tuned, overwrite) as tmp:
        for name, src in sources.items():
            compressed = src.compress(rank, sparsities[name], svd, progress)
            record = {
                "format": "hoe-expert/1",
                "kind": "single",
                "anchor": {name: 1.0},
                "base": stored_ref(base),
                "source": stored_ref(tuned[name]),  # a local folder as an absolute path
                "source_kind": src.kind,
                "rank": rank,
                "sparsity": sparsities[name],
                "svd": svd,
                "targets": list(targets) if targets else None,
                **energy_summary(compressed),
                "command": command_line(),
                "versions": versions(),
            }
            write_adapter(
                tmp / name,
                {m: w for m, (w, _) in compressed.items()},
                str(base),
                record,
                expert_card(name, record),
                out_dtype,
            )
    return {name: Path(out) / name for name in tuned}


def _source(
    name: str,
    ref: str | Path,
    base: Checkpoint,
    modules: list[TargetModule],
    all_linear: dict[str, TargetModule],
    targets: list[str] | None,
) -> Source:
    """The task vector of one ``tuned`` input, a PEFT adapter or a full checkpoint, checked against the base."""
    folder = resolve_model_dir(ref, field="tuned")
    if is_peft_adapter(folder):
        return AdapterTaskVector(name, folder, "tuned", all_linear, targets)
    return CheckpointTaskVector(name, base, Checkpoint(folder, field="tuned"), modules)


def _sparsity(sparsity: float | None, src: Source) -> float:
    """The given sparsity, else the default of the source's kind (an adapter's delta is already low-rank)."""
    if sparsity is not None:
        return float(sparsity)
    return DEFAULT_SPARSITY if src.kind == "checkpoint" else 0.0


def validate_names(named: Mapping[str, object], field: str) -> None:
    """At least one NAME, each usable as a folder name (experts are written as ``out/NAME``)."""
    if not named:
        raise ConfigError("nothing given.", field=field, fix="Pass at least one NAME=PATH.")
    for name in named:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(
                f"name {name!r} is not usable as a folder name.",
                field=field,
                value=name,
                fix="Use letters, digits, _ . - (not starting with . _ or -).",
            )


def validate_sparsity(sparsity: float) -> float:
    """A fraction in [0, 1) of task-vector entries to drop; NaN, inf and non-numbers are refused."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
        raise bad_value("sparsity", sparsity, "Pass a fraction in [0, 1) of entries to drop (0 = none).")
    return float(sparsity)


def check_rank_fits(rank: Rank, modules: list[TargetModule]) -> None:
    """An int rank must not exceed min(out, in) of any adapted matrix."""
    if isinstance(rank, int):
        too_small = [m for m in modules if m.max_rank < rank]
        if too_small:
            m = min(too_small, key=lambda m: m.max_rank)
            raise ConfigError(
                f"got {rank}, larger than the matrix {m.name} ({m.out_features}x{m.in_features}) allows.",
                field="rank",
                value=rank,
                fix=f"Pass rank <= {m.max_rank}, or an energy fraction such as 0.9.",
            )


def check_source_rank(rank: Rank, src: Source, sparsity: float) -> None:
    """An int rank must fit every matrix, and, for an adapter passed through without sparsity, not exceed the
    adapter's own rank: SVD of B @ A cannot give more components than A has rows, so the expert would
    silently be of lower rank than asked and recorded. (With sparsity the sparsified delta is full-rank.)"""
    if isinstance(src, AdapterTaskVector) and isinstance(rank, int) and sparsity == 0:
        module, r = src.min_rank()
        if rank > r:
            raise ConfigError(
                f"got {rank}, larger than the rank {r} of adapter {src.name!r} (module {module}).",
                field="rank",
                value=rank,
                fix=f"Pass rank <= {r} (the adapter's rank) or an energy fraction.",
            )
    check_rank_fits(rank, src.modules)


def energy_summary(compressed: Compressed) -> dict:
    """Per-module rank and energy kept, plus min/mean, for the expert record."""
    per_module = {m: {"rank": w.rank, "energy": round(e, 6)} for m, (w, e) in compressed.items()}
    energies = [e for _, e in compressed.values()]
    return {
        "energy_min": round(min(energies), 6),
        "energy_mean": round(sum(energies) / len(energies), 6),
        "modules": per_module,
    }


def expert_card(name: str, record: dict) -> str:
    anchor = ", ".join(f"{k}={v:g}" for k, v in record["anchor"].items())
    return (
        f"# LoRA expert `{name}`\n\n"
        f"A `hoe` {record['kind']}-objective LoRA expert (anchor preference: {anchor}), a standard PEFT adapter:\n"
        f"`PeftModel.from_pretrained(base, this_folder)`.\n\n"
        f"- base model: `{record['base']}`\n"
        f"- rank: {record['rank']}; energy kept: min {record['energy_min']:.4f}, mean {record['energy_mean']:.4f}\n"
        f"- made by: `{record['command']}`\n"
        f"- versions: {', '.join(f'{k} {v}' for k, v in record['versions'].items())}\n\n"
        "Details (per-module rank and energy) are in `hoe_expert.json`.\n"
    )


def _check_base(base: Checkpoint, modules: list[TargetModule]) -> None:
    """The base checkpoint's weights have the shapes its config.json implies (checked before any work)."""
    for m in modules:
        expected = (m.in_features, m.out_features) if m.transposed else (m.out_features, m.in_features)
        if base.shape(m.weight_key) != expected:
            raise ShapeMismatchError(
                f"{m.weight_key} has shape {base.shape(m.weight_key)} but config.json implies {expected}.",
                field="base",
                fix="Pass a model folder whose weights match its config.json.",
            )
