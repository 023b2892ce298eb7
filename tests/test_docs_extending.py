"""docs/extending.md's examples run as written and print what the page says they print.

Like ``tests/test_readme.py``, the page's ```python blocks are executed with ``exec``. How:

* **One fresh namespace per section** (a ``## `` heading): the blocks of a section run in order in one
  namespace, so a later block uses what an earlier one defined (the example, then its test, then its errors);
  nothing is shared between sections. Each section is one test, named by its heading. Blocks are compiled
  with ``dont_inherit=True``, so this module's ``from __future__ import annotations`` does not reach them.
* **Printed output is checked**: a ```python block followed directly (only blank lines between) by a
  ```text block must print exactly that text (the error messages the page quotes are produced by the code, so
  they cannot drift); a block without one must print nothing.
* **Nothing leaks**: the registries (objective kinds, merge methods, scalarisations, evaluation methods) are
  restored after each section, as are ``sys.path``, the modules imported from folders the section put on
  it and torch's global random state, so the page's registrations are invisible to other tests.

The launcher the page gives for the command line is also run, in a subprocess, to show that ``hoe``'s CLI sees
a merge method registered by a module of the user's.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


@dataclass
class Block:
    section: str
    body: str
    line: int  # of the block's first line of code, 1-based, for tracebacks
    expected: str | None  # the ```text block right after it, if any


def doc_blocks(text: str) -> list[Block]:
    fences = list(FENCE.finditer(text))
    spans = [(f.start(), f.end()) for f in fences]
    headings = [
        (m.start(), m.group(1).strip())
        for m in re.finditer(r"^## (.+)$", text, re.M)
        if not any(a <= m.start() < b for a, b in spans)
    ]
    blocks = []
    for i, f in enumerate(fences):
        if f["lang"] != "python":
            continue
        section = next((title for pos, title in reversed(headings) if pos < f.start()), "(top)")
        following = fences[i + 1] if i + 1 < len(fences) else None
        expected = None
        if (
            following is not None
            and following["lang"] == "text"
            and not text[f.end() : following.start()].strip()
        ):
            expected = textwrap.dedent(following["body"])
        line = text.count("\n", 0, f.start()) + 2
        blocks.append(Block(section, textwrap.dedent(f["body"]), line, expected))
    return blocks


BLOCKS = doc_blocks(DOC.read_text())
SECTIONS = list(dict.fromkeys(b.section for b in BLOCKS))


def registries() -> list[dict]:
    from hoe.evaluation.methods import METHODS
    from hoe.experts.merging import MERGE_METHODS
    from hoe.objectives import OBJECTIVES
    from hoe.objectives.base import SPEC_CHECKS
    from hoe.objectives.reward_model import TEMPLATES
    from hoe.scalarisation import SCALARISATIONS

    return [OBJECTIVES, SPEC_CHECKS, TEMPLATES, MERGE_METHODS, SCALARISATIONS, METHODS]


@contextlib.contextmanager
def isolated():
    """Restore the registries, ``sys.path``, the modules imported from folders added to it, and torch's
    global random state (the examples seed it)."""
    import torch

    saved = [(r, dict(r)) for r in registries()]
    path = list(sys.path)
    rng = torch.random.get_rng_state()
    try:
        yield
    finally:
        torch.random.set_rng_state(rng)
        added = [Path(p).resolve() for p in sys.path if p and p not in path]
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if file and any(Path(file).resolve().is_relative_to(folder) for folder in added):
                del sys.modules[name]
        sys.path[:] = path
        for registry, entries in saved:
            registry.clear()
            registry.update(entries)


def padded(source: str, line: int) -> str:
    """``source`` preceded by blank lines, so a traceback gives the line number in docs/extending.md."""
    return "\n" * (line - 1) + source


def test_every_section_of_the_page_has_an_example():
    for n in ("1. An objective", "2. A merge method", "3. A scalarisation", "4. An evaluation method"):
        assert n in SECTIONS, f"no python example under '## {n}' of docs/extending.md"


@pytest.mark.parametrize("section", SECTIONS)
def test_section_examples_run(section, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = [dict(r) for r in registries()]
    with isolated():
        namespace: dict = {"__name__": "docs_extending"}
        for block in (b for b in BLOCKS if b.section == section):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = compile(padded(block.body, block.line), str(DOC), "exec", dont_inherit=True)
                exec(code, namespace)
            where = f"docs/extending.md line {block.line}"
            if block.expected is None:
                assert out.getvalue() == "", f"{where} prints, but no ```text block follows it"
            else:
                assert out.getvalue() == block.expected, f"{where} prints other than its ```text block"
    assert [dict(r) for r in registries()] == before  # nothing the section registered is left


def launcher(text: str) -> str:
    found = re.search(r"cat > hoe_plus\.py <<'EOF'\n(.*?)^ *EOF$", text, re.M | re.S)
    assert found, "docs/extending.md shows no hoe_plus.py launcher"
    return textwrap.dedent(found.group(1))


def test_the_launcher_shows_the_cli_a_users_merge_method(tmp_path):
    (tmp_path / "hoe_plus.py").write_text(launcher(DOC.read_text()))
    (tmp_path / "my_extensions.py").write_text(
        textwrap.dedent(
            """
            from hoe.experts.merging import register_merge


            @register_merge("halved")
            def halved(deltas, weights):
                return 0.5 * (weights.view(-1, 1, 1) * deltas).sum(0)
            """
        )
    )
    args = ["merge", "--expert", "a=x", "--expert", "b=y", "--preference", "0.5,0.5", "--rank", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "hoe_plus.py", *args, "--out", "o", "--method", "nope"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "error: --method: got 'nope'. Choose one of ['halved', 'pcb'," in done.stderr
