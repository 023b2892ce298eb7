"""``hoe setup check | plan | prompts``: a whole experiment from one TOML file (:mod:`hoe.setups`)."""

from __future__ import annotations

from pathlib import Path

import typer

from hoe.cli.app import app

setup_app = typer.Typer(
    help="A whole experiment from one TOML file: check it, print its commands, write its prompts.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(setup_app, name="setup")

SETUP_HELP = "A set-up TOML file, or a shipped one: smol3, hh-rlhf, reddit-summary, beavertails."


@setup_app.command("check")
def check_setup(setup: str = typer.Argument(..., help=SETUP_HELP)) -> None:
    """Check a set-up without loading a model: objectives, prompts, anchors and every command's options."""
    from hoe.cli.plan import check
    from hoe.setups import load_setup

    steps = check(load_setup(setup))
    typer.echo(f"{setup}: ok ({len(steps)} commands; hoe setup plan {setup} --out DIR prints them)")


@setup_app.command("plan")
def plan_setup(
    setup: str = typer.Argument(..., help=SETUP_HELP),
    out: Path = typer.Option(..., help="The run folder every command writes under."),
) -> None:
    """Print the hoe commands that run a set-up, in order, as a shell script (checked first)."""
    from hoe.cli.plan import check
    from hoe.setups import load_setup

    loaded = load_setup(setup)
    steps = check(loaded, out)  # before anything is printed: a refused set-up prints no script
    typer.echo(comment(f"{loaded.name}: {loaded.about}".rstrip(": ")) + "\nset -e")
    for step in steps:
        typer.echo(f"\n{comment(step.what)}\n{step.shell()}")


def comment(text: str) -> str:
    """``text`` as one inert shell comment line: control characters (which :func:`hoe.setups.load_setup`
    refuses already) are written escaped, never as themselves, so nothing can end the comment."""
    from hoe.setups.config import escape_controls

    return f"# {escape_controls(text)}"


@setup_app.command("prompts")
def setup_prompts(
    setup: str = typer.Argument(..., help=SETUP_HELP),
    out: Path = typer.Option(..., help="The JSONL file to write (train and eval splits)."),
) -> None:
    """Write a set-up's prompts from its Hugging Face dataset (needs the datasets package)."""
    from hoe.setups import load_setup
    from hoe.setups.prompts import dataset_prompts

    typer.echo(f"prompts written to {dataset_prompts(load_setup(setup).prompts, out)}")
