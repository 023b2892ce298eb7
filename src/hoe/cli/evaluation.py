"""``hoe evaluate``: Pareto fronts of HoE and the baselines, with hypervolume, intervals, cost and plots."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from hoe.cli.app import app
from hoe.cli.parsing import config_from, config_option, parse_named
from hoe.evaluation.evaluate import EvaluateConfig


def _option(name: str, help: str) -> Any:
    return config_option(EvaluateConfig, name, help)


def evaluate_config(params: Mapping[str, Any]) -> EvaluateConfig:
    """The :class:`~hoe.evaluation.evaluate.EvaluateConfig` of ``evaluate``'s parsed options (every field is one);
    also what ``hoe setup check`` validates a set-up's evaluation with."""
    objective = params["objective"]
    return config_from(
        EvaluateConfig,
        params,
        model=str(params["model"]),
        out=str(params["out"]),
        tuned=parse_named(params["tuned"], "tuned"),
        objective=list(objective) if objective else None,
        preference=list(params["preference"]),
    )


@app.command()
def evaluate(
    ctx: typer.Context,
    model: Path = typer.Option(..., help="The HoE bundle (its routers are the `hoe` method)."),
    out: Path = typer.Option(
        ..., help="Results folder; an interrupted run resumes from the points stored there."
    ),
    methods: str = _option(
        "methods", help="Comma-separated, among hoe, hoe-lora, soup, rs, mod, base, experts."
    ),
    prompts: str = _option("prompts", help="Prompt set: a JSONL file, or smol:SPLIT."),
    split: str | None = _option("split", help="Split of --prompts (smol:eval names its own)."),
    limit: int | None = _option("limit", help="Evaluate on the first N prompts only."),
    grid: int = _option(
        "grid", help="Preferences: the simplex lattice with step 1/GRID (4: 15 points for 3)."
    ),
    preference: list[str] = _option(
        "preference", help="An extra preference to evaluate, e.g. a=0.6,b=0.4 (repeat)."
    ),
    samples: int = _option("samples", help="Responses per prompt and preference."),
    max_new_tokens: int = _option("max_new_tokens", help="Most tokens per response."),
    temperature: float = _option("temperature", help="Sampling temperature; 0 decodes greedily."),
    seed: int = _option(
        "seed", help="Sample s of prompt i (of n) is seeded SEED + s*n + i, for every method."
    ),
    objective: list[str] | None = _option(
        "objective",
        help="One per bundle objective, named like it: NAME=KIND[:ARG] (repeat; default: the bundle's "
        "objective names as built-in kinds).",
    ),
    reference_point: str | None = _option(
        "reference_point",
        help="Hypervolume reference point, one value per objective (a=0,b=-0.5 or 0,-0.5); default BENCH.md's "
        "for relevance, positivity, brevity; required for other objectives.",
    ),
    tuned: list[str] = typer.Option(
        [],
        help="OBJECTIVE=PATH: the model tuned for an objective (full checkpoint or PEFT adapter), for rs, mod "
        "and experts (default: the source recorded by the bundle's expert).",
    ),
    chat: bool = _option("chat", help="Wrap each prompt in the chat template."),
    batch_size: int = _option("batch_size", help="Prompts per generation batch (memory only)."),
    bootstrap: int = _option("bootstrap", help="Bootstrap resamples over prompts for the intervals."),
    device: str = _option("device", help="auto (the GPU if torch sees one), cpu, cuda or cuda:N."),
    dtype: str = _option("dtype", help="Models are loaded in: float32, bfloat16 or float16."),
    overwrite: bool = _option(
        "overwrite", help="Redo stored points made with other settings (without it they are refused)."
    ),
    reuse: bool = _option(
        "reuse",
        help="Copy a point that another method computes identically (HoE where no router is reached and "
        "HoE without routers; soup, RS and MOD at a vertex and the expert) instead of generating it again.",
    ),
    shard: str | None = _option(
        "shard",
        help="I/N: compute shard I (0-based) of N of the points into --out (run the N shards at once, e.g. one "
        "per GPU); the last to finish writes results.json. Under torchrun the rank is the shard.",
    ),
    progress: bool = typer.Option(True, help="Show a progress bar over the (method, preference) points."),
) -> None:
    """Evaluate HoE against the baselines over a preference grid (BENCH.md §1) and write results.json,
    results.md and the figures (pareto.png, hypervolume.png, simplex.png)."""
    config = evaluate_config(ctx.params)
    from hoe.evaluation.evaluate import evaluate as run
    from hoe.evaluation.report import markdown

    results = run(config, progress=progress)
    if results is None:  # a shard whose points are stored; another process writes results.json
        typer.echo(f"this shard's points are stored in {out}; results.json follows when every shard's are")
        return
    typer.echo(markdown(results).split("\n## ")[0].rstrip())
    typer.echo(f"\nresults written to {out}")


@app.command("ablation")
def ablation(
    row: list[str] = typer.Option(
        ...,
        help="LABEL=FOLDER:METHOD: one composition, a method of a finished hoe evaluate folder (repeat), e.g. "
        "'3 LoRA=runs/ablation/lora3:hoe-lora'.",
    ),
    out: Path = typer.Option(..., help="Folder for results.json and results.md."),
    reference: str | None = typer.Option(None, help="The row the ratios divide by (default: the first)."),
    reference_point: str | None = typer.Option(
        None, help="Hypervolume reference point (default BENCH.md's for relevance, positivity, brevity)."
    ),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples over prompts (paired across rows)."),
) -> None:
    """Compare bundles' fronts evaluated on one protocol (the expert-composition ablation): HV, paired
    intervals and ratios; reads the finished points, generates nothing."""
    from hoe.evaluation.ablation import ablation as run
    from hoe.evaluation.ablation import markdown

    result = run(list(row), reference, out, reference_point, bootstrap)
    typer.echo(markdown(result, result["command"]).rstrip())
    typer.echo(f"\nresults written to {out}")
