"""``hoe build`` and ``hoe generate``: the HoE model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hoe.cli import app
from hoe.cli.parsing import parse_named
from hoe.model.build import build as build_bundle


def split_anchor(value: str) -> tuple[str, str | None]:
    """``DIR@helpful=0.5,harmless=0.5`` -> (DIR, preference); a DIR that exists as given is never split."""
    if Path(value).exists() or "@" not in value:
        return value, None
    folder, _, preference = value.rpartition("@")
    return folder, preference


@app.command()
def build(
    base: str = typer.Option(..., help="Base model: local folder, built-in name or Hugging Face id."),
    expert: list[str] = typer.Option(
        ...,
        help="NAME=DIR[@PREFERENCE] of a LoRA expert. Single-objective experts "
        "(no @) name the objectives, in order; a merged expert's anchor comes from "
        "@helpful=0.5,harmless=0.5 or from its own record.",
    ),
    out: Path = typer.Option(..., help="Output bundle folder."),
    router: list[str] = typer.Option([], help="NAME@PREFERENCE: add an (untrained, uniform) router expert."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """Assemble LoRA experts into an HoE bundle (manifest + PEFT adapters + routers)."""
    folders, anchors = {}, {}
    for name, value in parse_named(expert, "expert").items():
        folders[name], pref = split_anchor(value)
        if pref is not None:
            anchors[name] = pref
    routers = {}
    for item in router:
        name, sep, pref = item.partition("@")
        if not sep:
            raise typer.BadParameter(f"write NAME@PREFERENCE, got {item!r}", param_hint="--router")
        routers[name] = pref
    folder = build_bundle(base, folders, out, anchors, routers, overwrite)
    typer.echo(f"bundle: {folder}")


@app.command()
def generate(
    prompt: list[str] = typer.Argument(..., help="One or more prompts (generated as one batch)."),
    model: Path = typer.Option(..., help="HoE bundle folder (from `hoe build`)."),
    preference: str = typer.Option(
        ...,
        help="relevance=0.6,positivity=0.4 (missing objectives get 0) or "
        "0.6,0.4,0.0; normalised to sum to 1.",
    ),
    chat: bool = typer.Option(False, help="Wrap each prompt in the model's chat template."),
    max_new_tokens: int = typer.Option(48, min=1),
    temperature: float = typer.Option(0.7, min=0.0, help="0 decodes greedily."),
    seed: int = typer.Option(
        0, help="Prompt i is sampled with seed SEED + i, whatever else is in the batch."
    ),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per prompt."),
    device: str = typer.Option("auto", help="auto (the GPU if torch sees one), cpu, cuda or cuda:N."),
) -> None:
    """Generate text with an HoE bundle at a preference."""
    from hoe.devices import resolve_device
    from hoe.model.generation import generate_text, load_tokenizer
    from hoe.model.hoe_model import HoEModel

    hoe_model = HoEModel.from_pretrained(model, device=resolve_device(device))
    tokenizer = load_tokenizer(hoe_model.base_ref)
    responses = generate_text(
        hoe_model, tokenizer, prompt, preference, chat, max_new_tokens, temperature, seed
    )
    for i, (p, text) in enumerate(zip(prompt, responses)):
        if json_lines:
            typer.echo(json.dumps({"prompt": p, "preference": preference, "response": text}))
        else:
            typer.echo(("\n---\n" if i else "") + text)
