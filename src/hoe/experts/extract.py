"""``hoe extract``: single-objective LoRA experts from fine-tuned models (METHOD.md §2(a).1)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from hoe.conventions import Rank
from hoe.errors import ConfigError, ShapeMismatchError
from hoe.experts.targets import TargetModule, find_target_modules, linear_modules, skeleton_from_config
from hoe.experts.task_svd import validate_rank
from hoe.experts.task_vectors import AdapterTaskVector, CheckpointTaskVector, Compressed
from hoe.io.adapters import is_peft_adapter, write_adapter
from hoe.io.atomic import atomic_output_dir, check_output_dir
from hoe.io.checkpoint import Checkpoint
from hoe.io.resolve import resolve_model_dir
from hoe.provenance import command_line, versions

DEFAULT_SPARSITY = 0.2
"""Fraction of smallest-magnitude task-vector entries dropped before the SVD (the paper's ``min_ratio``)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
    out_dtype = parse_dtype(dtype)
    check_output_dir(out, overwrite)
    base_ckpt = Checkpoint(resolve_model_dir(base, "base"), "base")
    skeleton = skeleton_from_config(base_ckpt.config())
    all_linear = linear_modules(skeleton)
    modules = find_target_modules(skeleton, targets)
    _check_base(base_ckpt, modules)
    sources: dict[str, CheckpointTaskVector | AdapterTaskVector] = {}
    for name, ref in tuned.items():
        folder = resolve_model_dir(ref, "tuned")
        if is_peft_adapter(folder):
            sources[name] = AdapterTaskVector(name, folder, "tuned", all_linear)
        else:
            sources[name] = CheckpointTaskVector(name, base_ckpt, Checkpoint(folder, "tuned"), modules)
        check_rank_fits(rank, sources[name].modules)
    with atomic_output_dir(out, overwrite) as tmp:
        for name, src in sources.items():
            s = validate_sparsity(
                sparsity if sparsity is not None else (DEFAULT_SPARSITY if src.kind == "checkpoint" else 0.0)
            )
            compressed = src.compress(rank, s, svd, progress)
            record = {
                "format": "hoe-expert/1",
                "kind": "single",
                "anchor": {name: 1.0},
                "base": str(base),
                "source": str(tuned[name]),
                "source_kind": src.kind,
                "rank": rank,
                "sparsity": s,
                "svd": svd,
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


def validate_names(named: Mapping[str, object], field: str) -> None:
    if not named:
        raise ConfigError(f"--{field}: nothing given. Pass at least one NAME=PATH.")
    for name in named:
        if not _NAME.match(name):
            raise ConfigError(
                f"--{field}: name {name!r} is not usable as a folder name; use letters, digits, _ . -"
            )


def validate_sparsity(sparsity: float) -> float:
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(
            f"--sparsity: got {sparsity}. Pass a fraction in [0, 1) of entries to drop (0 = none)."
        )
    return float(sparsity)


def check_rank_fits(rank: Rank, modules: list[TargetModule]) -> None:
    """An int rank must not exceed min(out, in) of any adapted matrix."""
    if isinstance(rank, int):
        too_small = [m for m in modules if m.max_rank < rank]
        if too_small:
            m = min(too_small, key=lambda m: m.max_rank)
            raise ConfigError(
                f"--rank: got {rank}, larger than the matrix {m.name} ({m.out_features}x{m.in_features}) allows. "
                f"Pass --rank <= {m.max_rank}, or an energy fraction such as 0.9."
            )


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
    for m in modules:
        expected = (m.in_features, m.out_features) if m.transposed else (m.out_features, m.in_features)
        if base.shape(m.weight_key) != expected:
            raise ShapeMismatchError(
                f"--base: {m.weight_key} has shape {base.shape(m.weight_key)} but config.json implies {expected}."
            )


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(f"--dtype: got {name!r}. Choose one of {sorted(DTYPES)}.") from None
