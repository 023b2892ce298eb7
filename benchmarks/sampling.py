"""Benchmark: per-row seeded sampling (hoe.generation.sampling) against transformers' batch sampling.

SmolLM2-135M-Instruct, 8 eval prompts in one batch, chat template, T = 0.7, exactly ``--new-tokens`` new
tokens (``min_new_tokens`` = ``max_new_tokens``, so both variants do the same work), interleaved repeats in one
process. ``global``: ``do_sample=True`` from torch's global generator; ``per_row``: ``RowSampler`` with
one generator per row. Prints one JSON line with median tokens/s and their ratio.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/sampling.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hoe.backbones import SMOLLM2
from hoe.bundle.folder import load_base_model
from hoe.data.prompts import load_prompts
from hoe.generation.sampling import RowSampler
from hoe.generation.text import encode_prompts, load_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(2)
    tokenizer, model = load_tokenizer(SMOLLM2), load_base_model(SMOLLM2)
    prompts = [p.text for p in load_prompts("smol", "eval")][: args.batch]
    enc = encode_prompts(tokenizer, prompts, chat=True)
    n = args.new_tokens
    common = {"max_new_tokens": n, "min_new_tokens": n, "pad_token_id": tokenizer.pad_token_id}
    variants = {
        "global": lambda: {"do_sample": True, "temperature": 0.7, "top_k": 0, "top_p": 1.0},
        "per_row": lambda: {
            "do_sample": False,
            "logits_processor": [RowSampler(range(len(prompts)), 0.7)],
        },
    }
    speeds: dict[str, list[float]] = {k: [] for k in variants}
    for rep in range(args.repeats + 1):  # the first round warms up and is dropped
        for name, make in variants.items():
            torch.manual_seed(rep)
            start = time.perf_counter()
            out = model.generate(**enc, **common, **make())
            seconds = time.perf_counter() - start
            assert out.shape[1] - enc["input_ids"].shape[1] == n
            if rep:
                speeds[name].append(len(prompts) * n / seconds)
    med = {k: round(statistics.median(v), 2) for k, v in speeds.items()}
    report = {"benchmark": "sampling", "batch": len(prompts), "new_tokens": n, "repeats": args.repeats}
    report |= {"median_tok_s": med, "per_row_over_global": round(med["per_row"] / med["global"], 3)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
