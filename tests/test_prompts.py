"""Prompt sets: the shipped JSONL file and the loader's errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hoe.data.prompts import load_prompts
from hoe.errors import ConfigError

SMOL = Path(__file__).resolve().parents[1] / "src" / "hoe" / "data" / "smol.jsonl"


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def test_shipped_prompts_are_valid_and_split_disjoint():
    everything = load_prompts(SMOL)
    train, held_out = load_prompts(SMOL, "train"), load_prompts(SMOL, "eval")
    assert len(held_out) >= 64
    assert len(train) + len(held_out) == len(everything)
    assert not {normalise(p.text) for p in train} & {normalise(p.text) for p in held_out}
    keys = [normalise(p.text) for p in everything]
    assert len(set(keys)) == len(keys)  # deduplicated, case/punctuation-insensitive
    assert all(3 <= len(p.text.split()) <= 30 for p in everything)


def test_builtin_names_select_the_shipped_set_and_its_split(tmp_path, monkeypatch):
    assert load_prompts("smol") == load_prompts(SMOL)
    assert load_prompts("smol:eval", "train") == load_prompts(SMOL, "eval")  # NAME:SPLIT wins
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smol").write_text('{"prompt": "a local file of that name"}\n')
    assert [p.text for p in load_prompts("smol")] == ["a local file of that name"]  # a real path wins


def test_shipped_split_follows_the_stable_hash():
    import hashlib

    for p in load_prompts(SMOL):
        digest = hashlib.sha256(normalise(p.text).encode()).hexdigest()
        assert p.split == ("eval" if int(digest[:8], 16) % 100 < 20 else "train"), p


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_file_without_split_is_used_whole(tmp_path):
    path = write(tmp_path, [json.dumps({"prompt": "a b c"}), "", json.dumps({"prompt": "d e f", "id": "x"})])
    prompts = load_prompts(path, "train")
    assert [p.text for p in prompts] == ["a b c", "d e f"]
    assert [p.id for p in prompts] == ["line-1", "x"]


@pytest.mark.parametrize(
    "bad, line, words",
    [
        ('{"prompt": "ok"}\n{"prompt": "no end"', 2, "not valid JSON"),
        ('{"prompt": "ok"}\n\n["a list"]', 3, "JSON object"),
        ('{"prompt": "ok"}\n{"text": "wrong key"}', 2, '"prompt"'),
        ('{"prompt": "ok", "split": 3}', 1, "'split' must be a string"),
        ('{"prompt": "a", "split": "train"}\n{"prompt": "b"}', 2, 'no "split"'),
        ('{"prompt": "a", "id": "k"}\n{"prompt": "b", "id": "k"}', 2, "already used on line 1"),
    ],
)
def test_malformed_file_names_the_line(tmp_path, bad, line, words):
    path = tmp_path / "bad.jsonl"
    path.write_text(bad)
    with pytest.raises(ConfigError, match=rf"^prompts: bad.jsonl line {line}: .*{re.escape(words)}"):
        load_prompts(path)


def test_empty_or_missing_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ConfigError, match="holds no prompts"):
        load_prompts(tmp_path / "empty.jsonl")
    with pytest.raises(ConfigError, match="does not exist"):
        load_prompts(tmp_path / "missing.jsonl")


def test_unknown_split(tmp_path):
    path = write(tmp_path, [json.dumps({"prompt": "a b c", "split": "train"})])
    with pytest.raises(ConfigError, match=r"^split: .*no prompts in split 'test'; it has \['train'\]"):
        load_prompts(path, "test")
