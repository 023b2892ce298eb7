"""Errors are data, and only front ends word fields as flags (CONVENTIONS.md §13)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from hoe.errors import NO_VALUE, ConfigError, ConfigErrors, bad_value, flag

SRC = Path(__file__).parents[1] / "src" / "hoe"
FLAG_TEXT = re.compile(r"^--[a-z{]|--\{")  # "--rank: ..." or f"--{field}"


def library_strings():
    for path in sorted(SRC.rglob("*.py")):
        if "cli" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            yield f"{path.relative_to(SRC)}:{node.lineno}", text


def test_the_library_never_words_a_flag():
    offenders = [f"{where}: {text[:60]!r}" for where, text in library_strings() if FLAG_TEXT.search(text)]
    assert offenders == []


def test_an_error_carries_its_parts_and_each_front_end_words_it():
    e = bad_value("max_new_tokens", 0, "Pass a positive number of tokens.")
    assert (e.field, e.value, e.fix) == ("max_new_tokens", 0, "Pass a positive number of tokens.")
    assert str(e) == "max_new_tokens: got 0. Pass a positive number of tokens."
    assert e.cli_message() == "--max-new-tokens: got 0. Pass a positive number of tokens."
    assert e.message == "got 0. Pass a positive number of tokens."  # what the server puts next to `param`
    assert ConfigError("no field").field is None and ConfigError("x").value is NO_VALUE
    assert flag("preference[2]") == "--preference[2]"


def test_several_errors_are_reported_together():
    both = ConfigErrors(
        [bad_value("lr", float("inf"), "Pass a finite rate."), bad_value("steps", 0, "Pass >= 1.")]
    )
    assert both.field == "lr" and [e.field for e in both.errors] == ["lr", "steps"]
    assert (
        both.cli_message()
        == "invalid options:\n  --lr: got inf. Pass a finite rate.\n  --steps: got 0. Pass >= 1."
    )
