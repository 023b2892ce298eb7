"""``hoe extract`` and ``hoe merge``: LoRA experts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from hoe.backbones import SMOLLM2
from hoe.cli.app import app
from hoe.cli.parsing import parse_list, parse_named
from hoe.experts.extract import extract as extract_experts
from hoe.experts.merge import merge as merge_experts
from hoe.experts.merging import MERGE_METHODS, option_help
from hoe.experts.task_svd import parse_rank
from hoe.io.adapters import read_record


@app.command()
def extract(
    base: str = typer.Option(
        ..., help=f"Base model: a local folder, the built-in {SMOLLM2} or a Hugging Face id (owner/name)."
    ),
    tuned: list[str] = typer.Option(
        ...,
        help="NAME=PATH of a fine-tuned model (folder, hub id or PEFT LoRA "
        "adapter); repeat once per objective.",
    ),
    rank: str = typer.Option(
        ..., help="LoRA rank (int, e.g. 64) or energy fraction to keep (float, e.g. 0.9)."
    ),
    out: Path = typer.Option(..., help="Output folder; one PEFT adapter folder per NAME is written inside."),
    sparsity: float | None = typer.Option(
        None,
        help="Fraction of smallest |task vector| entries dropped before "
        "the SVD (default: 0.2 for checkpoints, 0 for LoRA adapters).",
    ),
    targets: str | None = typer.Option(
        None,
        help="Comma-separated module names to adapt (e.g. q_proj,v_proj) "
        "(default: every linear projection inside the transformer blocks).",
    ),
    svd: str = typer.Option("auto", help="SVD solver: auto, full or randomized (int ranks only)."),
    dtype: str = typer.Option("float32", help="Saved adapter dtype: float32, float16 or bfloat16."),
    overwrite: bool = typer.Option(
        False,
        help="Replace experts of these NAMEs in --out (each only once its new version is complete); other "
        "experts there are kept.",
    ),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Compress fine-tuned models into LoRA experts with task-SVD (one expert per objective)."""
    folders = extract_experts(
        base,
        parse_named(tuned, "tuned"),
        parse_rank(rank),
        out,
        sparsity,
        parse_list(targets),
        svd,
        dtype,
        overwrite,
        progress,
    )
    for name, folder in folders.items():
        _report(name, folder)


MERGE_OPTION_FLAGS = ("density", "keep", "clip", "scale")


def merge_options(params: Mapping[str, Any]) -> dict[str, float]:
    """The method options of ``merge``'s parameters, those given: passed through as given, the library checks
    each against the method's declared options and ranges."""
    return {k: params[k] for k in MERGE_OPTION_FLAGS if params.get(k) is not None}


@app.command()
def merge(
    ctx: typer.Context,
    expert: list[str] = typer.Option(
        ..., help="NAME=DIR of a LoRA expert (PEFT adapter); repeat per expert."
    ),
    preference: str = typer.Option(
        ...,
        help="Weights over the --expert names: helpful=0.5,harmless=0.5 or 0.5,0.5. Normalised to sum to 1.",
    ),
    rank: str = typer.Option(..., help="Rank of the merged expert (int) or energy fraction (float)."),
    out: Path = typer.Option(..., help="Output folder for the merged PEFT adapter."),
    method: str = typer.Option("pcb", help=f"Merge method: {', '.join(sorted(MERGE_METHODS))}."),
    density: float | None = typer.Option(None, help=option_help("density")),
    keep: float | None = typer.Option(None, help=option_help("keep")),
    clip: float | None = typer.Option(None, help=option_help("clip")),
    scale: float | None = typer.Option(None, help=option_help("scale")),
    svd: str = typer.Option("auto", help="SVD solver: auto, full or randomized (int ranks only)."),
    dtype: str = typer.Option("float32", help="Saved adapter dtype: float32, float16 or bfloat16."),
    overwrite: bool = typer.Option(
        False, help="Replace --out if it exists (once the new expert is complete)."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Merge LoRA experts at a preference into one multi-objective LoRA expert (merge on full deltas, then SVD)."""
    options = merge_options(ctx.params)
    folder = merge_experts(
        parse_named(expert, "expert"),
        preference,
        parse_rank(rank),
        out,
        method,
        svd,
        dtype,
        overwrite,
        progress,
        **options,
    )
    _report(folder.name, folder)


def _report(name: str, folder: Path) -> None:
    record = read_record(folder) or {}
    typer.echo(
        f"{name}: {folder}  (rank {record.get('rank')}, energy kept min {record.get('energy_min', 0):.4f} "
        f"mean {record.get('energy_mean', 0):.4f})"
    )
