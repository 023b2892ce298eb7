"""Parsing of the CLI's repeated ``NAME=VALUE`` options."""

from __future__ import annotations

import dataclasses

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


def config_option(config: type, name: str, help: str):
    """``--NAME`` with the default of field ``name`` of the config dataclass ``config``: the CLI never types a
    default twice."""
    f = {f.name: f for f in dataclasses.fields(config)}[name]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return typer.Option(default, help=help)
