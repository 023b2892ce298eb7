"""The ``hoe`` command line: one subcommand per pipeline stage, each a thin layer over a library function."""

from __future__ import annotations

import sys

import typer

from hoe.errors import HoEError

app = typer.Typer(
    help="HoE: multi-objective alignment of LLMs with hierarchical experts (LoRA experts, routers, preference "
    "routing).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from hoe.cli import experts, model, training  # noqa: E402,F401  (registers the subcommands)


def main() -> None:
    """Console entry point: user errors print one clear line and exit 2, never a traceback."""
    try:
        app()
    except HoEError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)
