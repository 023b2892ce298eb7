"""``hoe build`` and ``hoe generate``: the HoE model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from hoe.bundle.build import build as build_bundle
from hoe.bundle.router_folder import save_router as save_router_folder
from hoe.cli.app import app
from hoe.cli.parsing import parse_named
from hoe.errors import ConfigError


def split_anchor(value: str) -> tuple[str, str | None]:
    """``DIR@helpful=0.5,harmless=0.5`` -> (DIR, preference); a DIR that exists as given is never split."""
    if Path(value).exists() or "@" not in value:
        return value, None
    folder, _, preference = value.rpartition("@")
    return folder, preference


def parse_routers(items: list[str]) -> dict[str, str]:
    """``["mid@0.5,0.5"]`` -> ``{"mid": "0.5,0.5"}``; every router needs a name and a preference, once."""
    routers: dict[str, str] = {}
    for item in items:
        name, sep, pref = item.partition("@")
        if not sep or not name.strip() or not pref.strip():
            missing = "a name" if sep and not name.strip() else "NAME@PREFERENCE"
            raise ConfigError(
                f"got {item!r}, which lacks {missing}.",
                field="router",
                value=item,
                fix="Write NAME@PREFERENCE, e.g. mid@0.5,0.5.",
            )
        if name in routers:
            raise ConfigError(
                f"the router name {name!r} is given twice.",
                field="router",
                value=item,
                fix="Give every router its own name.",
            )
        routers[name] = pref
    return routers


@app.command()
def build(
    base: str = typer.Option(
        ..., help="Base model: local folder (stored as an absolute path), built-in name or Hugging Face id."
    ),
    expert: list[str] = typer.Option(
        ...,
        help="NAME=DIR[@PREFERENCE] of a LoRA expert. Single-objective experts "
        "(no @) name the objectives, in order; a merged expert's anchor comes from "
        "@helpful=0.5,harmless=0.5 or from its own record.",
    ),
    out: Path = typer.Option(..., help="Output bundle folder."),
    router: list[str] = typer.Option(
        [], help="NAME@PREFERENCE: add an (untrained, uniform) router expert; names must be unique."
    ),
    router_from: list[Path] = typer.Option(
        [],
        help="A trained router folder (hoe save-router) to attach; refused unless the experts are the ones "
        "it was trained with.",
    ),
    overwrite: bool = typer.Option(
        False, help="Replace --out if it exists (once the new bundle is complete)."
    ),
) -> None:
    """Assemble LoRA experts into an HoE bundle (manifest + PEFT adapters + routers)."""
    folders, anchors = {}, {}
    for name, value in parse_named(expert, "expert").items():
        folders[name], pref = split_anchor(value)
        if pref is not None:
            anchors[name] = pref
    folder = build_bundle(base, folders, out, anchors, parse_routers(router), overwrite, router_from)
    typer.echo(f"bundle: {folder}")


@app.command("save-router")
def save_router(
    model: Path = typer.Option(..., help="A bundle with the router (e.g. made by hoe train-router)."),
    name: str = typer.Option(..., help="The router's name in that bundle."),
    out: Path = typer.Option(..., help="Output router folder (small: float16 router weights + card)."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """Write one trained router expert to its own folder, to attach with hoe build --router-from."""
    typer.echo(f"router: {save_router_folder(model, name, out, overwrite)}")


@app.command()
def export(
    model: Path = typer.Option(..., help="HoE bundle folder (from `hoe build`)."),
    preference: str | None = typer.Option(
        None, help="The one trade-off to export: relevance=0.6,positivity=0.4 or 0.6,0.4,0.0."
    ),
    out: Path = typer.Option(
        ...,
        help="Output folder: a plain Hugging Face checkpoint with its tokenizer (merged), one PEFT adapter "
        "(adapter), or with --grid one adapter per point and index.json.",
    ),
    format: str = typer.Option(
        "merged",
        help="merged: the experts merged into the base weights; adapter: PEFT LoRA adapters over the unchanged "
        "base, for vLLM, LoRAX or TGI.",
    ),
    grid: int | None = typer.Option(
        None, help="With --format adapter: one adapter per point of the simplex lattice of step 1/GRID."
    ),
    print_vllm_args: bool = typer.Option(
        False, help="With --grid: print the `vllm serve` line that serves every adapter written."
    ),
    dtype: str | None = typer.Option(
        None,
        help="Saved weights dtype: float32, bfloat16 or float16 (default: the base checkpoint's for merged, "
        "the experts' for adapters).",
    ),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists (once the new one is complete)."),
) -> None:
    """A bundle at a preference for engines that know nothing of HoE: merged into the base weights (a checkpoint
    transformers, vLLM or TGI load as is), or as PEFT LoRA adapters they batch over one base. Router experts
    are left out: token-level routing needs `hoe serve`."""
    from hoe.errors import ConfigError
    from hoe.export import export as export_bundle
    from hoe.export.adapter import read_index

    if print_vllm_args and grid is None:
        raise ConfigError(
            "prints the line for an adapter grid.",
            field="print_vllm_args",
            fix="Pass --format adapter --grid K.",
        )
    written = export_bundle(model, preference, out, dtype, overwrite, format=format, grid=grid)
    kind = "checkpoint" if format == "merged" else "adapters" if grid is not None else "adapter"
    typer.echo(f"{kind}: {written}")
    if print_vllm_args:
        typer.echo(read_index(written)["vllm"])


@app.command()
def generate(
    prompt: list[str] = typer.Argument(
        ..., metavar="PROMPT", help="One or more prompts (generated as one batch)."
    ),
    model: Path = typer.Option(..., help="HoE bundle folder (from `hoe build`)."),
    preference: str = typer.Option(
        ...,
        help="relevance=0.6,positivity=0.4 (missing objectives get 0) or "
        "0.6,0.4,0.0; normalised to sum to 1.",
    ),
    base: str | None = typer.Option(
        None,
        help="Base model to load the bundle on (folder, built-in name or Hugging Face id) instead of the one "
        "stored in its manifest, e.g. when that folder has moved.",
    ),
    chat: bool = typer.Option(False, help="Wrap each prompt in the model's chat template."),
    max_new_tokens: int = typer.Option(
        48, help="Most tokens generated per prompt (>= 1); prompt + new tokens must fit the model's context."
    ),
    temperature: float = typer.Option(
        0.7, help="Sampling temperature, a finite number >= 0; 0 decodes greedily."
    ),
    seed: int = typer.Option(
        0, help="Prompt i is sampled with seed SEED + i, whatever else is in the batch."
    ),
    truncate: bool = typer.Option(
        False,
        help="Keep only the last tokens of a prompt too long for the model's context (with --max-new-tokens); "
        "without it such a prompt is refused.",
    ),
    json_lines: bool = typer.Option(False, "--json", help="Print one JSON object per prompt."),
    device: str = typer.Option("auto", help="auto (the GPU if torch sees one), cpu, cuda or cuda:N."),
) -> None:
    """Generate text with an HoE bundle at a preference."""
    from hoe.generation.text import generate as generate_responses

    with _prompts_as_argument():
        responses = generate_responses(
            model, prompt, preference, base, chat, max_new_tokens, temperature, seed, truncate, device
        )
    for i, (p, text) in enumerate(zip(prompt, responses)):
        if json_lines:
            typer.echo(json.dumps({"prompt": p, "preference": preference, "response": text}))
        else:
            typer.echo(("\n---\n" if i else "") + text)


@contextmanager
def _prompts_as_argument() -> Iterator[None]:
    """The library's ``prompts`` is the positional PROMPT here, not a flag: word its errors that way."""
    try:
        yield
    except ConfigError as e:
        if e.field != "prompts":
            raise
        raise ConfigError(f"PROMPT: {e.problem}", value=e.value, fix=e.fix) from None
