"""Parsing of the CLI's repeated ``NAME=VALUE`` options, and options read from and into config dataclasses."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import typer

from hoe.errors import ConfigError, bad_value, flag


def parse_named(items: list[str], field: str) -> dict[str, str]:
    """``["a=x", "b=y"]`` -> ``{"a": "x", "b": "y"}``, with clear errors for malformed or repeated names."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise bad_value(field, item, f"Write NAME=PATH, e.g. {flag(field)} helpful=./helpful-model.")
        if name in out:
            raise ConfigError(f"name {name!r} is given twice.", field=field, fix="Give every NAME once.")
        out[name] = value
    return out


def parse_list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


Config = TypeVar("Config")


def config_option(config: type, name: str, help: str) -> Any:
    """``--NAME`` with the default of field ``name`` of the config dataclass ``config`` (required when the field
    has none): the CLI never types a default twice."""
    f = {f.name: f for f in dataclasses.fields(config)}[name]
    if f.default is not dataclasses.MISSING:
        return typer.Option(f.default, help=help)
    if f.default_factory is not dataclasses.MISSING:
        return typer.Option(f.default_factory(), help=help)
    return typer.Option(..., help=help)


def config_from(config: type[Config], params: Mapping[str, Any], **converted: Any) -> Config:
    """The config dataclass ``config`` of a command's parsed options (``ctx.params``): every field from the option
    of its name, or from ``converted`` where the option's value needs converting (a ``Path`` to ``str``...).
    Options that are no field (``--progress``) stay out."""
    names = [f.name for f in dataclasses.fields(config)]  # type: ignore[arg-type]
    return config(**{n: converted[n] if n in converted else params[n] for n in names})
