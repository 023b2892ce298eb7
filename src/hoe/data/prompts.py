"""Prompt sets: JSONL files, one JSON object per line.

``{"prompt": "How are you?", "id": "smol-3f2a", "split": "train"}`` -- ``prompt`` (a non-empty string) is
required; ``id`` and ``split`` are optional strings; other fields are ignored and blank lines skipped.
A file whose lines have no ``split`` is used whole whatever split is asked for; in a file with splits,
every line must have one. The shipped set is ``smol`` (``src/hoe/data/smol.jsonl``: ``train`` / ``eval``).
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


FORMAT_FIX = 'Write one JSON object per line, e.g. {"prompt": "How are you?"}.'


BUILTIN_PROMPTS = {
    "smol": Path(__file__).with_name("smol.jsonl"),
    "apart": Path(__file__).with_name("apart.jsonl"),
}
"""Prompt sets shipped inside the package, by name: ``smol`` (712 chatterbot-corpus prompts, ``train`` / ``eval``)
and ``apart`` (32 longer requests on other topics -- cooking, travel, code, health, money, history, science,
work -- written apart from the smol set, never trained on: a check that a router's gain is not the smol
prompts' alone, BENCH.md §4)."""


def prompt_source(spec: str | Path, split: str | None = None) -> tuple[Path, str | None]:
    """``spec`` is a JSONL path, a built-in name (``smol``) or ``NAME:SPLIT`` (``smol:eval``, whose split wins
    over ``split``); return (file, split)."""
    name, sep, named_split = str(spec).partition(":")
    if name in BUILTIN_PROMPTS and not Path(spec).exists():
        return BUILTIN_PROMPTS[name], (named_split if sep else split)
    return Path(spec), split


def load_prompts(path: str | Path, split: str | None = None, field: str = "prompts") -> list[Prompt]:
    """Read a prompt set (a JSONL file, or a built-in name, see :func:`prompt_source`); keep the prompts of
    ``split`` if given (all of them if the file has no splits). Raises :class:`ConfigError` (about ``field``)
    naming the line of the first malformed entry."""
    path, split = prompt_source(path, split)
    if not path.is_file():
        problem = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"{str(path)!r} {problem}.", field=field, value=str(path), fix=f"Pass a JSONL file. {FORMAT_FIX}"
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"cannot read {str(path)!r} ({e}).",
            field=field,
            value=str(path),
            fix="Pass a readable UTF-8 file.",
        ) from None
    prompts = [parse_line(line, i, path, field) for i, line in enumerate(lines, start=1) if line.strip()]
    if not prompts:
        raise ConfigError(f"{str(path)!r} holds no prompts.", field=field, value=str(path), fix=FORMAT_FIX)
    check_ids(prompts, path, field)
    return select_split(prompts, split, path, field)


def parse_line(line: str, number: int, path: Path, field: str) -> Prompt:
    def bad(what: str, fix: str = FORMAT_FIX) -> ConfigError:
        return ConfigError(f"{path.name} line {number}: {what}.", field=field, value=str(path), fix=fix)

    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise bad(f"not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise bad(f'expected a JSON object like {{"prompt": "..."}}, got {type(obj).__name__}')
    text = obj.get("prompt")
    if not isinstance(text, str) or not text.strip():
        raise bad('needs a non-empty string field "prompt"')
    for key in ("id", "split"):
        if key in obj and not isinstance(obj[key], str):
            raise bad(f"field {key!r} must be a string, got {obj[key]!r}", f"Write {key} as a JSON string.")
    return Prompt(text, obj.get("id") or f"line-{number}", obj.get("split"), number)


def check_ids(prompts: list[Prompt], path: Path, field: str) -> None:
    seen: dict[str, int] = {}
    for p in prompts:
        if p.id in seen:
            raise ConfigError(
                f"{path.name} line {p.line}: id {p.id!r} is already used on line {seen[p.id]}.",
                field=field,
                value=str(path),
                fix="Give every prompt a unique id (or none).",
            )
        seen[p.id] = p.line


def select_split(prompts: list[Prompt], split: str | None, path: Path, field: str) -> list[Prompt]:
    with_split = [p for p in prompts if p.split is not None]
    if not with_split:
        return prompts
    if len(with_split) != len(prompts):
        missing = next(p for p in prompts if p.split is None)
        raise ConfigError(
            f'{path.name} line {missing.line}: no "split" while other lines have one.',
            field=field,
            value=str(path),
            fix="Give every line a split, or none.",
        )
    if split is None:
        return prompts
    chosen = [p for p in prompts if p.split == split]
    if not chosen:
        found = sorted({p.split for p in with_split if p.split})
        raise ConfigError(
            f"{path.name} has no prompts in split {split!r}; it has {found}.",
            field="split",
            value=split,
            fix=f"Pass one of {found}.",
        )
    return chosen
