"""Evaluate the smol3 single-objective experts against the base model on the `eval` prompts (BENCH.md §1).

For the base model and each expert in experts/smol3/: generate one response per eval prompt (chat template,
sampling T = 0.7, 48 new tokens, seeded per batch), score all three objectives, and report mean ± standard
error per objective. Writes experts/smol3/eval.json and prints a Markdown table.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/eval_smol3.py [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hoe.backbones import SMOLLM2
from hoe.data.prompts import load_prompts
from hoe.model.bundle import load_base_model
from hoe.model.generation import generate_text, load_tokenizer
from hoe.objectives import ObjectiveContext, build_objectives, score_matrix
from hoe.provenance import command_line, versions

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = ["relevance", "positivity", "brevity"]


def rewards(model, tokenizer, prompts: list[str], objectives, batch: int) -> torch.Tensor:
    """(n, m) reward matrix of one sampled response per prompt."""
    rows = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        responses = generate_text(
            model, tokenizer, chunk, None, chat=True, max_new_tokens=48, temperature=0.7, seed=start
        )
        rows.append(score_matrix(objectives, chunk, responses))
    return torch.cat(rows)


def summary(r: torch.Tensor) -> dict[str, dict[str, float]]:
    n = r.shape[0]
    return {
        o: {"mean": round(float(r[:, j].mean()), 4), "se": round(float(r[:, j].std() / n**0.5), 4)}
        for j, o in enumerate(OBJECTIVES)
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experts", type=Path, default=ROOT / "experts" / "smol3")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    from peft import PeftModel

    start = time.perf_counter()
    tokenizer = load_tokenizer(SMOLLM2)
    objectives = build_objectives(OBJECTIVES, ObjectiveContext(tokenizer=tokenizer, max_new_tokens=48))
    prompts = [p.text for p in load_prompts(ROOT / "data" / "prompts" / "smol.jsonl", "eval")]
    results = {"base": summary(rewards(load_base_model(SMOLLM2), tokenizer, prompts, objectives, args.batch))}
    for o in OBJECTIVES:
        model = PeftModel.from_pretrained(load_base_model(SMOLLM2), str(args.experts / o)).eval()
        results[o] = summary(rewards(model, tokenizer, prompts, objectives, args.batch))
    report = {
        "eval_prompts": len(prompts),
        "decoding": "chat template, T=0.7, 48 new tokens, seed per batch",
        "results": results,
        "seconds": round(time.perf_counter() - start),
        "command": command_line(),
        "versions": versions(),
    }
    (args.experts / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(prompts)} eval prompts; mean ± s.e.\n")
    print("| model | " + " | ".join(OBJECTIVES) + " |\n|---|" + "---|" * len(OBJECTIVES))
    for name, res in results.items():
        print(
            f"| {name} | "
            + " | ".join(f"{res[o]['mean']:.3f} ± {res[o]['se']:.3f}" for o in OBJECTIVES)
            + " |"
        )


if __name__ == "__main__":
    main()
