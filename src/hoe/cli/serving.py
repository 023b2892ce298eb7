"""``hoe serve``: the OpenAI-compatible server with a preference per request."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from hoe.cli.app import app
from hoe.errors import ConfigError


@app.command()
def serve(
    model: Path = typer.Option(..., help="HoE bundle folder (from `hoe build`)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (default: this machine only)."),
    port: int = typer.Option(8000, help="TCP port."),
    api_key: str | None = typer.Option(
        None, help="Require `Authorization: Bearer KEY` on every route but /health (or set HOE_API_KEY)."
    ),
    name: str | None = typer.Option(None, help="The model name clients pass (default: the bundle folder's)."),
    max_tokens: int = typer.Option(256, help="Most new tokens per choice a request may ask for."),
    max_prompt_tokens: int = typer.Option(2048, help="Longest prompt accepted, in tokens."),
    max_concurrent: int = typer.Option(
        64, help="Requests held at once (in flight or waiting); more get 429."
    ),
    max_body_bytes: int = typer.Option(1_000_000, help="Largest request body; larger ones get 413."),
    max_batch_rows: int = typer.Option(32, help="Most rows (choices) decoded together in one batch."),
    timeout: float = typer.Option(120.0, help="Seconds a request may take before it gets 504."),
    device: str = typer.Option("auto", help="auto (the GPU if torch sees one), cpu, cuda or cuda:N."),
) -> None:
    """Serve an HoE bundle: POST /v1/chat/completions and /v1/completions with a "preference" per request,
    and a playground at /."""
    import logging

    from hoe.server import Limits
    from hoe.server import serve as run

    for flag, value in (("max_tokens", max_tokens), ("max_concurrent", max_concurrent),
                        ("max_batch_rows", max_batch_rows), ("max_prompt_tokens", max_prompt_tokens),
                        ("max_body_bytes", max_body_bytes)):  # fmt: skip
        if value < 1:
            raise ConfigError(
                f"must be >= 1, got {value}.", field=flag, value=value, fix="Pass a positive number."
            )
    if not 0 < timeout < float("inf"):
        raise ConfigError(
            f"must be > 0 and finite, got {timeout}.", field="timeout", value=timeout, fix="Pass seconds > 0."
        )
    if not 0 <= port <= 65535:
        raise ConfigError(
            f"must be a TCP port from 0 to 65535, got {port}.", field="port", value=port,
            fix="Pass a port such as 8000 (0: any free port).",
        )  # fmt: skip
    limits = Limits(max_tokens, max_prompt_tokens, max_concurrent=max_concurrent, max_body_bytes=max_body_bytes,
                    timeout_s=timeout, max_batch_rows=max_batch_rows)  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    typer.echo(f"serving {model} on http://{host}:{port} (playground at /)")
    run(model, host, port, api_key or os.environ.get("HOE_API_KEY"), name, limits, device)
