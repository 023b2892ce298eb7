"""``hoe train-expert`` (a single-objective LoRA expert by RLOO) and ``hoe train-router`` (a router expert by MO-PPO)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from hoe.cli.app import app
from hoe.cli.parsing import config_from, config_option, parse_list
from hoe.training import ExpertConfig, RouterConfig
from hoe.training import train_expert as run_expert
from hoe.training import train_router as run_router


def _expert_option(name: str, help: str) -> Any:
    return config_option(ExpertConfig, name, help)


def _router_option(name: str, help: str) -> Any:
    return config_option(RouterConfig, name, help)


@app.command("train-expert")
def train_expert(
    ctx: typer.Context,
    out: Path = _expert_option("out", help="Output folder: the PEFT adapter, its card, and checkpoints/."),
    base: str = _expert_option(
        "base", help="Base model: a local folder, a Hugging Face id, or the built-in name."
    ),
    objective: str = _expert_option(
        "objective",
        help="What to maximise: relevance, positivity, brevity[:N], hf:MODEL[@INDEX][#TEMPLATE], neg:SPEC, "
        "judge:MODEL:QUESTION or "
        "py:package.module:function (prefix NAME= to rename).",
    ),
    prompts: str = _expert_option(
        "prompts",
        help='Prompt set: a JSONL file of {"prompt": ..., "split": ...} lines, or the built-in smol '
        "(712 short chat prompts).",
    ),
    split: str = _expert_option(
        "split", help="Split of --prompts to train on (a file without splits is used whole)."
    ),
    steps: int = _expert_option("steps", help="Optimizer steps (the total, also when resuming)."),
    seed: int = _expert_option("seed", help="Seed of the LoRA init, prompt order and sampling."),
    lora_rank: int = _expert_option("lora_rank", help="LoRA rank r (lora_alpha = r, so scaling 1)."),
    targets: str | None = _expert_option(
        "targets",
        help="Comma-separated module names to adapt (default: q_proj,k_proj,v_proj,o_proj if present).",
    ),
    lr: float = _expert_option("lr", help="AdamW learning rate (no weight decay)."),
    kl_coef: float = _expert_option(
        "kl_coef", help="β in reward = score - β·KL(policy || base) per response."
    ),
    samples_per_prompt: int = _expert_option(
        "samples_per_prompt", help="K responses per prompt (RLOO baseline: the other K-1)."
    ),
    batch_prompts: int = _expert_option(
        "batch_prompts", help="Prompts per step (a step trains on batch_prompts × K responses)."
    ),
    max_new_tokens: int = _expert_option(
        "max_new_tokens", help="Response length budget (also brevity's denominator)."
    ),
    temperature: float = _expert_option("temperature", help="Sampling temperature."),
    max_grad_norm: float = _expert_option("max_grad_norm", help="Gradient-norm clip."),
    micro_batch: int = _expert_option(
        "micro_batch", help="Rows per forward pass (rounded to whole prompt groups); saves memory."
    ),
    checkpoint_every: int = _expert_option(
        "checkpoint_every", help="Write a checkpoint every N steps (and at the end)."
    ),
    resume: bool = _expert_option(
        "resume", help="Continue from the last checkpoint in --out (start fresh if none)."
    ),
    overwrite: bool = _expert_option(
        "overwrite", help="Start again; an existing --out is kept until the new expert is complete."
    ),
    device: str = _expert_option("device", help="auto (the GPU if torch sees one), cpu, cuda or cuda:N."),
    dtype: str = _expert_option("dtype", help="Saved adapter dtype: float32, float16 or bfloat16."),
    base_dtype: str = _expert_option(
        "base_dtype",
        help="The frozen base model is loaded in: float32, bfloat16 or float16 (LoRA trains in float32).",
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train a single-objective LoRA expert (RLOO with a KL penalty to the base model)."""
    folder = run_expert(expert_config(ctx.params), progress=progress)
    typer.echo(f"expert written to {folder}")


def expert_config(params: Mapping[str, Any]) -> ExpertConfig:
    """The :class:`~hoe.training.expert.ExpertConfig` of ``train-expert``'s parsed options (every field is one);
    also what ``hoe setup check`` validates a set-up's experts with."""
    return config_from(ExpertConfig, params, out=str(params["out"]), targets=parse_list(params["targets"]))


def router_config(params: Mapping[str, Any]) -> RouterConfig:
    """The :class:`~hoe.training.router.RouterConfig` of ``train-router``'s parsed options (every field is one);
    also what ``hoe setup check`` validates a set-up's routers with."""
    objective = params["objective"]
    return config_from(
        RouterConfig,
        params,
        model=str(params["model"]),
        out=str(params["out"]),
        objective=list(objective) if objective else None,
    )


@app.command("train-router")
def train_router(
    ctx: typer.Context,
    model: Path = _router_option("model", help="The input bundle (made by hoe build); it is never modified."),
    anchor: str = _router_option(
        "anchor",
        help="The router's preference λ, e.g. relevance=0.5,positivity=0.5,brevity=0 (or 0.5,0.5,0); auto: "
        "the next anchor of --placement that the bundle has no router at.",
    ),
    out: Path = _router_option("out", help="The new bundle: the input bundle plus the trained router."),
    placement: str | None = _router_option(
        "placement",
        help="placement.json of hoe place-routers, for --anchor auto (its reason goes in the card).",
    ),
    objective: list[str] | None = _router_option(
        "objective",
        help="One per bundle objective, named like it: NAME=KIND[:ARG] (repeat; default: the bundle's objective "
        "names as built-in kinds, e.g. relevance).",
    ),
    prompts: str = _router_option("prompts", help="Prompt set: a JSONL file, or smol (smol:SPLIT)."),
    split: str = _router_option("split", help="Split of --prompts to train on."),
    name: str | None = _router_option("name", help="Name of the new router (default router-<anchor>)."),
    steps: int = _router_option("steps", help="PPO steps (the total, also when resuming)."),
    batch_size: int = _router_option(
        "batch_size", help="Prompts per step over all processes, one response each."
    ),
    seed: int = _router_option("seed", help="Seed of prompt order, sampling and minibatches."),
    scalarisation: str = _router_option(
        "scalarisation",
        help="tchebycheff (OMD toward z*, the paper's), hypervolume (from --reference-point, along λ), "
        "improvement (Tchebycheff from HoE-LoRA's rewards at the anchor) or linear (fixed weights λ).",
    ),
    target_point: str | None = _router_option(
        "target_point",
        help="z*, one reward per objective (a=0.7,b=2.2 or 0.7,2.2); default: the best single-objective "
        "expert's mean on --calibration-prompts training prompts plus --target-margin std.",
    ),
    target_margin: float = _router_option(
        "target_margin", help="z* margin above the best expert, in std of each objective."
    ),
    calibration_prompts: int = _router_option(
        "calibration_prompts", help="Training prompts that z* and the value heads' start are measured on."
    ),
    reference: str = _router_option(
        "reference", help="KL reference: soup (Σ λ_i B_i A_i of the single-objective experts) or hoe-lora."
    ),
    init: str | None = _router_option(
        "init",
        help="The router's first mixture: uniform over its experts, or hoe-lora (HoE-LoRA's weights at the "
        "anchor, so step 0 is HoE without routers); default: hoe-lora with --reference hoe-lora, else uniform.",
    ),
    reference_point: str | None = _router_option(
        "reference_point",
        help="The hypervolume scalarisation's reference point, one reward per objective (as hoe evaluate's; "
        "default BENCH.md's for relevance, positivity, brevity).",
    ),
    lr: float = _router_option("lr", help="Adam learning rate of the router."),
    value_lr: float | None = _router_option(
        "value_lr", help="Adam learning rate of the value heads (default --lr)."
    ),
    ppo_epochs: int = _router_option("ppo_epochs", help="PPO epochs over each step's batch."),
    minibatches: int = _router_option(
        "minibatches",
        help="Optimizer steps per PPO epoch (the batch split in as many; default 4, at most the batch size).",
    ),
    micro_batch: int = _router_option(
        "micro_batch", help="Rows per forward pass (memory only; no effect on results)."
    ),
    clip_range: float = _router_option("clip_range", help="PPO ratio clip ε."),
    value_clip: float = _router_option("value_clip", help="Value clip around the old values."),
    vf_coef: float = _router_option("vf_coef", help="Weight of the value loss."),
    gamma: float = _router_option("gamma", help="Discount γ of GAE."),
    gae_lambda: float = _router_option("gae_lambda", help="λ of GAE."),
    init_kl_coef: float = _router_option("init_kl_coef", help="Initial β of the per-token KL penalty."),
    adaptive_kl: bool = _router_option("adaptive_kl", help="Adapt β toward --kl-target (Ziegler et al.)."),
    kl_target: float = _router_option("kl_target", help="Target KL per response of the adaptive controller."),
    kl_horizon: int = _router_option("kl_horizon", help="Horizon of the adaptive KL controller."),
    omd_horizon: int = _router_option(
        "omd_horizon", help="OMD horizon H: the weights' rate is α = batch size / H."
    ),
    omd_step_size: float = _router_option("omd_step_size", help="OMD step size η (the authors' 3)."),
    max_grad_norm: float = _router_option(
        "max_grad_norm", help="Gradient-norm clip (router and value heads separately)."
    ),
    max_new_tokens: int = _router_option("max_new_tokens", help="Response length budget."),
    temperature: float = _router_option("temperature", help="Sampling temperature."),
    gradient_checkpointing: bool = _router_option(
        "gradient_checkpointing", help="Recompute activations in the backward pass (less memory, slower)."
    ),
    checkpoint_every: int = _router_option(
        "checkpoint_every", help="Write a checkpoint every N steps (and at the end)."
    ),
    resume: bool = _router_option("resume", help="Continue from the last checkpoint of --out."),
    overwrite: bool = _router_option(
        "overwrite", help="Start again; an existing --out is kept until the new bundle is complete."
    ),
    device: str = _router_option("device", help="auto, cpu, cuda (each process takes its local GPU)."),
    dtype: str = _router_option(
        "dtype", help="The bundle is loaded, trained and saved in: float32, bfloat16..."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar (else one log line per checkpoint)."),
) -> None:
    """Train a router expert at an anchor by multi-objective PPO (Tchebycheff + online mirror descent).

    Runs on one process, or on several under torchrun --nproc_per_node N / accelerate launch --num_processes N.
    """
    folder = run_router(router_config(ctx.params), progress=progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun / accelerate, one line, not one per process
        typer.echo(f"bundle with router written to {folder}")


@app.command("place-routers")
def place_routers(
    model: Path = typer.Option(..., help="The bundle the routers are for (made by hoe build)."),
    results: Path = typer.Option(
        ...,
        help="results.json (or its folder) of hoe evaluate --methods hoe-lora on TRAIN prompts, e.g. "
        "--prompts smol:train --limit 64 --grid 4.",
    ),
    routers: int = typer.Option(3, help="How many anchors to pick (fewer when no other candidate adds)."),
    out: Path = typer.Option(Path("placement.json"), help="Where the placement record is written."),
) -> None:
    """Pick router anchors where HoE without routers leaves the most front: per lattice point, the hypervolume
    that the best mixture of a router's experts would add there; greedy over K.

    Then train each pick with hoe train-router --anchor auto --placement OUT (on the bundle of the previous one).
    """
    from hoe.training.placement import place_routers as run

    record = run(results, model, routers, out)
    for pick in record["chosen"]:
        typer.echo(f"{pick['name']}: {pick['reason']}")
    if not record["chosen"]:
        typer.echo("no candidate adds hypervolume: HoE without routers is on its convex front here")
    typer.echo(f"placement written to {out}")
