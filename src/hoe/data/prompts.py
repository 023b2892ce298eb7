"""Prompt sets: JSONL files, one JSON object per line.

``{"prompt": "How are you?", "id": "smol-3f2a", "split": "train"}`` -- ``prompt`` (a non-empty string) is
required; ``id`` and ``split`` are optional strings; other fields are ignored and blank lines skipped.
A file whose lines have no ``split`` is used whole whatever split is asked for; in a file with splits,
every line must have one. The shipped set is ``data/prompts/smol.jsonl`` (``train`` / ``eval``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hoe.errors import ConfigError


@dataclass(frozen=True)
class Prompt:
    text: str
    id: str
    split: str | None = None
    line: int = field(default=0, compare=False)  # line number in its file, for error messages


def load_prompts(path: str | Path, split: str | None = None, flag: str = "prompts") -> list[Prompt]:
    """Read a prompt JSONL file; keep the prompts of ``split`` if given (all of them if the file has no
    splits). Raises :class:`ConfigError` naming the line of the first malformed entry."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f'--{flag}: {str(path)!r} is not a file. Pass a JSONL file of {{"prompt": ...}} lines.'
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--{flag}: cannot read {str(path)!r} ({e}).") from None
    prompts = [parse_line(line, i, path, flag) for i, line in enumerate(lines, start=1) if line.strip()]
    if not prompts:
        raise ConfigError(
            f'--{flag}: {str(path)!r} holds no prompts. Write one {{"prompt": ...}} object per line.'
        )
    check_ids(prompts, path, flag)
    return select_split(prompts, split, path, flag)


def parse_line(line: str, number: int, path: Path, flag: str) -> Prompt:
    where = f"--{flag}: {path.name} line {number}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON ({e.msg}). Write one JSON object per line.") from None
    if not isinstance(obj, dict):
        raise ConfigError(
            f'{where}: expected a JSON object like {{"prompt": "..."}}, got {type(obj).__name__}.'
        )
    text = obj.get("prompt")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f'{where}: needs a non-empty string field "prompt".')
    for key in ("id", "split"):
        if key in obj and not isinstance(obj[key], str):
            raise ConfigError(f"{where}: field {key!r} must be a string, got {obj[key]!r}.")
    return Prompt(text, obj.get("id") or f"line-{number}", obj.get("split"), number)


def check_ids(prompts: list[Prompt], path: Path, flag: str) -> None:
    seen: dict[str, int] = {}
    for p in prompts:
        if p.id in seen:
            raise ConfigError(
                f"--{flag}: {path.name} line {p.line}: id {p.id!r} is already used on line {seen[p.id]}; "
                "ids must be unique."
            )
        seen[p.id] = p.line


def select_split(prompts: list[Prompt], split: str | None, path: Path, flag: str) -> list[Prompt]:
    with_split = [p for p in prompts if p.split is not None]
    if not with_split:
        return prompts
    if len(with_split) != len(prompts):
        missing = next(p for p in prompts if p.split is None)
        raise ConfigError(
            f'--{flag}: {path.name} line {missing.line}: no "split" while other lines have one; give every line '
            "a split or none."
        )
    if split is None:
        return prompts
    chosen = [p for p in prompts if p.split == split]
    if not chosen:
        found = sorted({p.split for p in with_split if p.split})
        raise ConfigError(f"--split: {path.name} has no prompts in split {split!r}; it has {found}.")
    return chosen
