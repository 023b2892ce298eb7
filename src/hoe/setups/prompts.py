"""Prompt sets from Hugging Face datasets, in the formats of the paper's code (RiC's ``mod_utils``).

A format is a function from one dataset record to the prompt text, or None to skip the record:

* ``hh`` (``Anthropic/hh-rlhf``): the ``chosen`` conversation up to its last assistant turn, ending with
  ``" \\n\\nAssistant:"``;
* ``summarize`` (``openai/summarize_from_feedback``, ``comparisons``): ``"### Instruction: Generate a
  one-sentence summary of this post. ### Input: POST ### Response: "``, posts of 100-1200 characters with
  newlines as spaces, one prompt per post id;
* ``safe-rlhf`` (``PKU-Alignment/PKU-SafeRLHF-10K``): ``"\\n\\nHuman:PROMPT \\n\\nAssistant:"``.

The set-up's ``[prompts]`` table picks a split and every k-th record for ``train`` and ``eval``
(``eval = { split = "test", every = 10, limit = 2000 }``). The authors also drop prompts outside 8-512
tokens of the policy's tokenizer; that needs the model and is left to ``--limit`` and ``max_new_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hoe.errors import ConfigError
from hoe.io.atomic import atomic_file
from hoe.registry import Registry

PromptFormat = Callable[[dict[str, Any]], str | None]
PROMPT_FORMATS: Registry[PromptFormat] = Registry("prompts.format")


@PROMPT_FORMATS.register("hh")
def hh(record: dict[str, Any]) -> str | None:
    turns = record["chosen"].split("\n\nAssistant:")
    return "\n\nAssistant:".join(turns[:-1]) + " \n\nAssistant:" if len(turns) > 1 else None


@PROMPT_FORMATS.register("summarize")
def summarize(record: dict[str, Any]) -> str | None:
    post = record["info"]["post"].replace("\n", " ")
    if not 100 <= len(post) <= 1200:
        return None
    return f"### Instruction: Generate a one-sentence summary of this post. ### Input: {post} ### Response: "


@PROMPT_FORMATS.register("safe-rlhf")
def safe_rlhf(record: dict[str, Any]) -> str | None:
    return "\n\nHuman:" + record["prompt"] + " \n\nAssistant:"


def select(records: Iterable[dict[str, Any]], fmt: PromptFormat, every: int = 1, limit: int | None = None,
           key: Callable[[dict[str, Any]], Any] | None = None) -> list[str]:  # fmt: skip
    """Every ``every``-th record, formatted (skipped ones dropped), unique by ``key`` (default: the prompt),
    the first ``limit``."""
    out, seen = [], set()
    for i, record in enumerate(records):
        if i % every:
            continue
        text = fmt(record)
        k = text if key is None else key(record)
        if text is None or k in seen:
            continue
        seen.add(k)
        out.append(text)
        if limit is not None and len(out) >= limit:
            break
    return out


KEYS = {"summarize": lambda r: r["info"]["id"]}  # one prompt per post, not per comparison


def write_prompts(splits: dict[str, list[str]], out: Path) -> Path:
    """One JSONL file with a ``split`` on every line (``train``, ``eval``), written whole or not at all."""
    lines = [
        json.dumps({"prompt": text, "id": f"{split}-{i}", "split": split})
        for split, texts in splits.items()
        for i, text in enumerate(texts)
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def dataset_prompts(table: dict[str, Any], out: Path, load: Callable[..., Any] | None = None) -> Path:
    """Write the set-up's ``[prompts]`` (``dataset``, ``format``, ``subset``, ``train``, ``eval``) to ``out``.
    ``load`` is ``datasets.load_dataset`` (``pip install datasets``), or a stand-in in tests."""
    if load is None:
        try:
            from datasets import load_dataset as load
        except ImportError:
            raise ConfigError(
                "reading a Hugging Face dataset needs the datasets package.",
                field="prompts.dataset",
                value=table.get("dataset"),
                fix="pip install datasets, or give prompts.file (a JSONL file).",
            ) from None
    fmt = PROMPT_FORMATS.lookup(table.get("format"))
    splits = {}
    for split in ("train", "eval"):
        part = table.get(split, {})
        records = load(table["dataset"], table.get("subset"), split=part.get("split", split))
        if "sort" in part:  # e.g. the summary eval set: unique post ids in sorted order, as np.unique gives
            path = part["sort"].split(".")
            records = sorted(records, key=lambda r: _get(r, path))
        splits[split] = select(
            records, fmt, part.get("every", 1), part.get("limit"), KEYS.get(table["format"])
        )
    return write_prompts(splits, out)


def _get(record: dict[str, Any], path: list[str]) -> Any:
    for p in path:
        record = record[p]
    return record
