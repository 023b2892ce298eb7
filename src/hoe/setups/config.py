"""The set-up file: a TOML document, read into a :class:`Setup` whose fields are its top-level keys and tables.

.. code-block:: toml

    name = "hh-rlhf"
    base = "princeton-nlp/Llama-3-Base-8B-SFT"
    chat = false                       # the prompts are already in the model's format
    [objectives]                       # in order: NAME = SPEC (hoe.objectives), all maximised
    helpful = "hf:Ray2333/gpt2-large-helpful-reward_model#pair"
    [prompts]                          # file = a JSONL file or built-in set, or dataset + format (hoe setup prompts)
    dataset = "Anthropic/hh-rlhf"
    format = "hh"
    train = { split = "train" }
    eval = { split = "test", every = 10 }
    [tuned]                            # NAME = a fine-tuned model or PEFT adapter; a missing one is trained
    [train_expert]                     # hoe train-expert options, for the missing ones
    [extract]                          # hoe extract options (rank...)
    [merge]                            # hoe merge options; anchors = the merged experts' preferences
    [routers]                          # hoe train-router options; anchors = one router per preference
    [evaluate]                         # hoe evaluate options

Option tables use the commands' flag names with ``_`` for ``-`` (``max_new_tokens = 128``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from hoe.errors import ConfigError, FileKeyError

SETUPS = {p.stem: p for p in sorted(Path(__file__).parent.glob("*.toml"))}
"""The shipped set-ups, by name."""


@dataclass(frozen=True)
class Setup:
    name: str
    base: str
    objectives: dict[str, str]  # name -> spec, in the order of the bundle's objectives
    prompts: dict[str, Any]
    about: str = ""
    chat: bool = True  # wrap prompts in the tokenizer's chat template (false: they are in the model's format)
    tuned: dict[str, str] = field(default_factory=dict)
    train_expert: dict[str, Any] = field(default_factory=dict)
    extract: dict[str, Any] = field(default_factory=dict)
    merge: dict[str, Any] = field(default_factory=dict)
    routers: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # what it was read from: a shipped set-up's name, or the file


def load_setup(ref: str | Path) -> Setup:
    """Read a set-up from a TOML file, or a shipped one by name (:data:`SETUPS`)."""
    path = SETUPS.get(str(ref), Path(ref))
    if not path.is_file():
        raise ConfigError(
            f"no set-up file {str(ref)!r}.",
            field="setup file",
            value=str(ref),
            fix=f"Pass a TOML file, or one of the shipped set-ups: {', '.join(SETUPS)}.",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{path.name} is not valid TOML ({e}).", field="setup file", value=str(path), fix="Fix the file."
        ) from None
    _check_text(data, path.name)
    known = {f.name for f in fields(Setup)} - {"source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{path.name}: unknown key(s) {unknown}.",
            field="setup file",
            value=unknown,
            fix=f"Top-level keys and tables: {', '.join(sorted(known))}.",
        )
    missing = [k for k in ("name", "base", "objectives", "prompts") if k not in data]
    if missing:
        raise ConfigError(
            f"{path.name}: {missing} missing.", field="setup file", value=missing, fix="Add them."
        )
    for key, f in {f.name: f for f in fields(Setup)}.items():
        want = dict if "dict" in str(f.type) else (bool if f.type in (bool, "bool") else str)
        if key in data and not isinstance(data[key], want):
            raise FileKeyError(
                f"{path.name}: {key} is a {type(data[key]).__name__}.",
                field=key,
                value=data[key],
                fix=f"Write {key} as a {'table' if want is dict else want.__name__}.",
            )
    if len(data["objectives"]) < 2:
        raise FileKeyError(
            f"{path.name}: [objectives] names {len(data['objectives'])} objective(s).",
            field="objectives",
            value=data["objectives"],
            fix='Name at least two, one per line: NAME = SPEC (e.g. relevance = "relevance").',
        )
    return Setup(**data, source=str(ref) if str(ref) in SETUPS else str(path))


def _is_control(c: str) -> bool:
    """C0, DEL and C1 controls, line and paragraph separators: what could end a comment or a line of the
    shell script ``hoe setup plan`` prints."""
    return unicodedata.category(c) in ("Cc", "Zl", "Zp")


def control_characters(text: str) -> list[str]:
    """The control characters in ``text``, escaped (``\\n``), each once."""
    return sorted({repr(c)[1:-1] for c in text if _is_control(c)})


def escape_controls(text: str) -> str:
    """``text`` with every control character written escaped (``a\\nb``), so it stays on one line."""
    return "".join(repr(c)[1:-1] if _is_control(c) else c for c in text)


def _check_text(value: Any, file: str, key: str = "") -> None:
    """Refuse a control character in any key or string value of the set-up, naming its dotted key."""
    if isinstance(value, dict):
        for k, v in value.items():
            where = f"{key}.{k}" if key else str(k)
            if control_characters(str(k)):
                raise FileKeyError(
                    f"{file}: the key {str(k)!r} holds the control character(s) {control_characters(str(k))}.",
                    field=key or "setup file",
                    fix="Write keys on one line, without control characters.",
                )
            _check_text(v, file, where)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_text(v, file, f"{key}[{i}]")
    elif isinstance(value, str) and control_characters(value):
        raise FileKeyError(
            f"{file}: holds the control character(s) {control_characters(value)}.",
            field=key,
            value=value,
            fix="Write the value on one line, without control characters.",
        )
