"""``hoe train-expert``: a single-objective LoRA expert by RLOO policy gradient with a KL penalty."""

from __future__ import annotations

from pathlib import Path

import typer

from hoe.cli import app
from hoe.cli.parsing import parse_list


@app.command("train-expert")
def train_expert(
    out: Path = typer.Option(..., help="Output folder: the PEFT adapter, its card, and checkpoints/."),
    base: str = typer.Option(
        "smollm2-135m-instruct", help="Base model: a local folder, a Hugging Face id, or the built-in name."
    ),
    objective: str = typer.Option(
        "relevance",
        help="What to maximise: relevance, positivity, brevity[:N], hf:MODEL[@INDEX], judge:MODEL:QUESTION or "
        "py:package.module:function (prefix NAME= to rename).",
    ),
    prompts: str = typer.Option(
        "smol",
        help='Prompt set: a JSONL file of {"prompt": ..., "split": ...} lines, or the built-in smol '
        "(712 short chat prompts).",
    ),
    split: str = typer.Option(
        "train", help="Split of --prompts to train on (a file without splits is used whole)."
    ),
    steps: int = typer.Option(200, help="Optimizer steps (the total, also when resuming)."),
    seed: int = typer.Option(0, help="Seed of the LoRA init, prompt order and sampling."),
    lora_rank: int = typer.Option(8, help="LoRA rank r (lora_alpha = r, so scaling 1)."),
    targets: str | None = typer.Option(
        None, help="Comma-separated module names to adapt (default: q_proj,k_proj,v_proj,o_proj if present)."
    ),
    lr: float = typer.Option(2e-4, help="AdamW learning rate (no weight decay)."),
    kl_coef: float = typer.Option(0.05, help="β in reward = score - β·KL(policy || base) per response."),
    samples_per_prompt: int = typer.Option(4, help="K responses per prompt (RLOO baseline: the other K-1)."),
    batch_prompts: int = typer.Option(
        4, help="Prompts per step (a step trains on batch_prompts × K responses)."
    ),
    max_new_tokens: int = typer.Option(48, help="Response length budget (also brevity's denominator)."),
    temperature: float = typer.Option(0.7, help="Sampling temperature."),
    max_grad_norm: float = typer.Option(1.0, help="Gradient-norm clip."),
    micro_batch: int = typer.Option(
        16, help="Rows per forward pass (rounded to whole prompt groups); saves memory."
    ),
    checkpoint_every: int = typer.Option(25, help="Write a checkpoint every N steps (and at the end)."),
    resume: bool = typer.Option(
        False, help="Continue from the last checkpoint in --out (start fresh if none)."
    ),
    overwrite: bool = typer.Option(
        False, help="Start again; an existing --out is kept until the new expert is complete."
    ),
    device: str = typer.Option("auto", help="auto (the GPU if torch sees one), cpu, cuda or cuda:N."),
    dtype: str = typer.Option("float32", help="Saved adapter dtype: float32, float16 or bfloat16."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train a single-objective LoRA expert (RLOO with a KL penalty to the base model)."""
    from hoe.training.expert import ExpertConfig
    from hoe.training.expert import train_expert as run

    config = ExpertConfig(
        out=str(out),
        base=base,
        objective=objective,
        prompts=prompts,
        split=split,
        steps=steps,
        seed=seed,
        lora_rank=lora_rank,
        targets=parse_list(targets),
        lr=lr,
        kl_coef=kl_coef,
        samples_per_prompt=samples_per_prompt,
        batch_prompts=batch_prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        max_grad_norm=max_grad_norm,
        micro_batch=micro_batch,
        checkpoint_every=checkpoint_every,
        resume=resume,
        overwrite=overwrite,
        device=device,
        dtype=dtype,
    )
    folder = run(config, progress=progress)
    typer.echo(f"expert written to {folder}")
