"""Benchmark: decoding throughput of an HoE model against its plain base model (BENCH.md §2).

SmolLM2-135M-Instruct (the built-in backbone), 6 LoRA experts of rank 16 on every projection (random weights:
speed does not depend on them) anchored at the vertices and edge midpoints of the 3-objective simplex, greedy
decoding of exactly 48 new tokens, batch 1 and 8. Variants, run interleaved in one process:

* ``base``          : the plain model;
* ``hoe_one``       : one λ for the whole batch, (0.6, 0.25, 0.15): inside one Delaunay cell, 3 experts reached;
* ``hoe_rows_cell`` : a different λ per row, all inside that same cell (the same 3 experts);
* ``hoe_rows_any``  : a different λ per row drawn anywhere on the simplex (their cells together reach all 6);
* ``hoe_router``    : a second model with a router expert at the centre, λ at its anchor (per-token routing
                      in every module, mixing the 3 midpoint experts).

HoE computes only the experts a call can reach, so its cost grows with that number: ``hoe_rows_cell`` vs
``hoe_one`` isolates the cost of per-row weights; ``hoe_rows_any`` adds the cost of reaching more experts.

Prints one JSON line with median tokens/s per variant and the ratios to the base model.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/decode.py [--repeats 5] [--new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hoe.backbones import SMOLLM2
from hoe.experts.targets import find_target_modules
from hoe.io.adapters import LoraWeights
from hoe.model.bundle import load_base_model
from hoe.model.hoe_model import ExpertSpec, HoEModel

ANCHORS = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
OBJECTIVES = ["relevance", "positivity", "brevity"]


def hoe_model(rank: int, router: bool, seed: int = 0) -> HoEModel:
    base = load_base_model(SMOLLM2)
    g = torch.Generator().manual_seed(seed)
    modules = find_target_modules(base)
    experts, weights = [], []
    for i, anchor in enumerate(ANCHORS):
        experts.append(ExpertSpec(f"e{i}", tuple(float(a) for a in anchor)))
        weights.append(
            {
                m.name: LoraWeights(
                    A=0.01 * torch.randn(rank, m.in_features, generator=g),
                    B=0.01 * torch.randn(m.out_features, rank, generator=g),
                )
                for m in modules
            }
        )
    model = HoEModel(base, OBJECTIVES, experts, weights, SMOLLM2)
    if router:
        model.add_router("centre", [1 / 3, 1 / 3, 1 / 3])
    return model.eval()


def timed(fn, ids: torch.Tensor, new_tokens: int, **kwargs) -> float:
    start = time.perf_counter()
    out = fn(
        ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, **kwargs
    )
    seconds = time.perf_counter() - start
    assert out.shape[1] == ids.shape[1] + new_tokens
    return ids.shape[0] * new_tokens / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = load_base_model(SMOLLM2)
    model, routed = hoe_model(args.rank, router=False), hoe_model(args.rank, router=True)
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    any_pref = torch.distributions.Dirichlet(torch.ones(3)).sample((8,)).tolist()
    cell = torch.tensor([ANCHORS[0], ANCHORS[3], ANCHORS[4]])  # the cell of (0.6, 0.25, 0.15)
    cell_pref = (torch.distributions.Dirichlet(torch.ones(3)).sample((8,)) @ cell).tolist()
    variants = {
        "base": lambda ids, **kw: base.generate(ids, **kw),
        "hoe_one": lambda ids, **kw: model.generate(ids, preference=[0.6, 0.25, 0.15], **kw),
        "hoe_rows_cell": lambda ids, **kw: model.generate(ids, preference=cell_pref[: ids.shape[0]], **kw),
        "hoe_rows_any": lambda ids, **kw: model.generate(ids, preference=any_pref[: ids.shape[0]], **kw),
        "hoe_router": lambda ids, **kw: routed.generate(ids, preference=[1 / 3, 1 / 3, 1 / 3], **kw),
    }
    results: dict[str, dict[str, float]] = {}
    for batch in (1, 8):
        ids = torch.randint(100, 20000, (batch, 16), generator=g)
        for fn in variants.values():  # warm-up
            timed(fn, ids, 4)
        runs: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, fn in variants.items():  # interleaved, so machine load drifts hit every variant alike
                runs[name].append(timed(fn, ids, args.new_tokens))
        med = {name: statistics.median(v) for name, v in runs.items()}
        results[f"batch{batch}"] = {
            **{f"{n}_tok_s": round(v, 2) for n, v in med.items()},
            **{f"{n}_over_base": round(v / med["base"], 3) for n, v in med.items() if n != "base"},
            "rows_cell_cost_vs_one": round(med["hoe_one"] / med["hoe_rows_cell"] - 1, 3),
            "rows_any_cost_vs_one": round(med["hoe_one"] / med["hoe_rows_any"] - 1, 3),
        }
    print(
        json.dumps(
            {
                "benchmark": "decode",
                "model": SMOLLM2,
                "experts": len(ANCHORS),
                "rank": args.rank,
                "new_tokens": args.new_tokens,
                "repeats": args.repeats,
                "threads": args.threads,
                "torch": torch.__version__,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
