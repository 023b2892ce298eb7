"""The typer application every ``hoe`` subcommand registers on (``@app.command``), and its ``--version``."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="HoE: multi-objective alignment of LLMs with hierarchical experts (LoRA experts, routers, preference "
    "routing).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts hold literal brackets such as NAME=DIR[@PREFERENCE]
)


def _version(value: bool) -> None:
    if value:
        from hoe import __version__

        typer.echo(f"hoe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """HoE: multi-objective alignment of LLMs with hierarchical experts."""
