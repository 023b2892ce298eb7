"""Evaluate the smol3 single-objective experts against the base model on the `eval` prompts (BENCH.md §1).

For the base model and each expert in experts/smol3/: generate ``--samples`` responses per eval prompt (chat
template, sampling T = 0.7, 48 new tokens), score all three objectives, and report per objective

- the mean ± standard error over prompts (each prompt's score is the mean of its samples), and
- for each expert, the paired difference to the base model, prompt by prompt, mean ± s.e. and z = mean / s.e.

Sample s of prompt i is seeded ``s * n + i`` for every model (hoe.generation.sampling), so the base model and an
expert draw the same uniforms on the same prompt: the paired differences carry no sampling noise that the two
models share. Writes experts/smol3/eval.json and prints Markdown tables.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/eval_smol3.py [--samples 4] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hoe.backbones import SMOLLM2
from hoe.bundle.folder import load_base_model
from hoe.data.prompts import load_prompts
from hoe.evaluation.paired import mean_se, seeded_rewards
from hoe.generation.text import load_tokenizer
from hoe.objectives import ObjectiveContext, build_objectives
from hoe.provenance import command_line, versions

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = ["relevance", "positivity", "brevity"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experts", type=Path, default=ROOT / "experts" / "smol3")
    ap.add_argument("--samples", type=int, default=4, help="responses per prompt and model")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    from peft import PeftModel

    start = time.perf_counter()
    tokenizer = load_tokenizer(SMOLLM2)
    objectives = build_objectives(OBJECTIVES, ObjectiveContext(tokenizer=tokenizer, max_new_tokens=48))
    prompts = [p.text for p in load_prompts("smol", "eval")]
    models = {"base": lambda: load_base_model(SMOLLM2)}
    for o in OBJECTIVES:
        models[o] = lambda o=o: PeftModel.from_pretrained(
            load_base_model(SMOLLM2), str(args.experts / o)
        ).eval()
    matrices = {}
    for name, load in models.items():
        matrices[name] = seeded_rewards(
            load(), tokenizer, prompts, objectives, None, args.samples, args.batch
        )
        print(f"{name}: done after {time.perf_counter() - start:.0f} s", flush=True)
    results = {name: {o: mean_se(r[:, j]) for j, o in enumerate(OBJECTIVES)} for name, r in matrices.items()}
    paired = {
        name: {o: mean_se(r[:, j] - matrices["base"][:, j]) for j, o in enumerate(OBJECTIVES)}
        for name, r in matrices.items()
        if name != "base"
    }
    report = {
        "eval_prompts": len(prompts),
        "samples_per_prompt": args.samples,
        "decoding": "chat template, T=0.7, 48 new tokens, sample s of prompt i seeded s*n+i (same for all models)",
        "results": results,
        "paired_vs_base": paired,
        "seconds": round(time.perf_counter() - start),
        "command": command_line(),
        "versions": versions(),
    }
    (args.experts / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{len(prompts)} eval prompts x {args.samples} samples; mean ± s.e. over prompts\n")
    header = "| model | " + " | ".join(OBJECTIVES) + " |\n|---|" + "---|" * len(OBJECTIVES)
    print(header)
    for name, res in results.items():
        print(
            f"| {name} | "
            + " | ".join(f"{res[o]['mean']:.3f} ± {res[o]['se']:.3f}" for o in OBJECTIVES)
            + " |"
        )
    print("\nExpert − base, paired by prompt: mean ± s.e. (z)\n\n" + header)
    for name, res in paired.items():
        cells = [
            f"{res[o]['mean']:+.3f} ± {res[o]['se']:.3f} ({res[o]['mean'] / res[o]['se']:+.1f})"
            for o in OBJECTIVES
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
