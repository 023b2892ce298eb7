"""docs/concepts.md names modules and commands: each must exist, so the page cannot point at code that moved."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from hoe.cli import app

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "docs" / "concepts.md").read_text()


def test_every_module_the_page_names_exists():
    paths = set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+(?:\.py|/))`", TEXT))
    assert len(paths) > 10  # the pattern still finds the page's paths
    missing = sorted(p for p in paths if not (ROOT / "src" / "hoe" / p).exists())
    assert not missing, f"docs/concepts.md names modules that do not exist under src/hoe: {missing}"


def test_every_command_the_page_names_exists():
    commands = set(re.findall(r"\bhoe ([a-z][a-z-]+)", TEXT))
    assert {"extract", "merge", "build", "train-router", "evaluate"} <= commands
    known = set(typer.main.get_command(app).commands)
    assert commands <= known, f"not commands of hoe: {sorted(commands - known)}"
