"""Build the shipped prompt set ``src/hoe/data/smol.jsonl`` (built-in name ``smol``) from chatterbot-corpus (deterministic).

Prompts are the opening user line of every English chatterbot-corpus conversation (``pip install
chatterbot-corpus==1.3.3``; BSD), with whitespace collapsed, kept if they have 3 to 30 words, and
deduplicated case- and punctuation-insensitively (first occurrence wins, files in sorted order).
The split is a stable hash of the normalised text: ``eval`` when ``int(sha256[:8], 16) % 100 < 20``
(about 20 %), else ``train``, so adding prompts never moves an existing one between splits.

    python scripts/build_prompts.py [--out src/hoe/data/smol.jsonl]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import yaml

MIN_WORDS, MAX_WORDS = 3, 30
EVAL_PERCENT = 20
MIN_EVAL = 64


def corpus_dir() -> Path:
    import chatterbot_corpus

    return Path(chatterbot_corpus.__file__).parent / "data" / "english"


def normalise(text: str) -> str:
    """The dedup key: lower case, punctuation dropped, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def opening_lines(folder: Path) -> list[tuple[str, str]]:
    """``(source, text)`` of the first line of every conversation, files in sorted order."""
    out = []
    for file in sorted(folder.glob("*.yml")):
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for conversation in data.get("conversations") or []:
            if conversation and isinstance(conversation[0], str):
                out.append((f"chatterbot-corpus/english/{file.stem}", " ".join(conversation[0].split())))
    return out


def build(folder: Path) -> list[dict]:
    rows, seen = [], set()
    for source, text in opening_lines(folder):
        key = normalise(text)
        if not MIN_WORDS <= len(text.split()) <= MAX_WORDS or not key or key in seen:
            continue
        seen.add(key)
        digest = hashlib.sha256(key.encode()).hexdigest()
        split = "eval" if int(digest[:8], 16) % 100 < EVAL_PERCENT else "train"
        rows.append({"id": f"smol-{digest[:10]}", "prompt": text, "split": split, "source": source})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("src/hoe/data/smol.jsonl"))
    args = parser.parse_args()
    rows = build(corpus_dir())
    n_eval = sum(r["split"] == "eval" for r in rows)
    if n_eval < MIN_EVAL:
        raise SystemExit(f"only {n_eval} eval prompts (need {MIN_EVAL}); the corpus is not the expected one")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} prompts ({len(rows) - n_eval} train, {n_eval} eval) to {args.out}")


if __name__ == "__main__":
    main()
