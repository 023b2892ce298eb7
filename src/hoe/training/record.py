"""What both recipes write next to their artifact: the training record's shared parts and the card's lines.

A record is a JSON document (``hoe_training.json`` for an expert, ``hoe_router_training.json`` for a router)
holding the config, the commands that made it, versions, the per-step history and its :func:`summarise`.
"""

from __future__ import annotations

import json
from pathlib import Path


def summarise(history: list[dict], keys: tuple[str, ...], window: int = 10) -> dict:
    """Mean of each curve (``keys``) over the first and the last ``window`` steps."""

    def mean(rows: list[dict], key: str) -> float | None:
        return round(sum(r[key] for r in rows) / len(rows), 6) if rows else None

    first, last = history[:window], history[-window:]
    return {
        f"{which}{window}_{k}": mean(rows, k)
        for which, rows in (("first", first), ("last", last))
        for k in keys
    }


def write_record(path: Path, record: dict) -> None:
    """The record as indented JSON, one key per line."""
    path.write_text(json.dumps(record, indent=1) + "\n")


def made_by(record: dict) -> str:
    """```cmd``` or ```cmd```, resumed by ```cmd2``` (records before ``commands`` existed: ``command``)."""
    first, *resumed = record.get("commands") or [record["command"]]
    return f"`{first}`" + "".join(f", resumed by `{c}`" for c in resumed)


def versions_line(record: dict) -> str:
    """``torch 2.5, transformers 4.46, ...``: the card's versions line."""
    return ", ".join(f"{k} {v}" for k, v in record["versions"].items())
