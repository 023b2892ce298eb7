"""Benchmark: decoding throughput of an HoE model against its plain base model (BENCH.md §2).

SmolLM2-135M-Instruct (the built-in backbone), 6 LoRA experts of rank 16 on every projection (random weights:
speed does not depend on them) anchored at the vertices and edge midpoints of the 3-objective simplex, greedy
decoding of exactly 48 new tokens, batch 1 and 8. Variants, run interleaved in one process:

* ``base``          : the plain model;
* ``hoe_one``       : one λ for the whole batch, (0.6, 0.25, 0.15): inside one Delaunay cell, 3 experts reached;
* ``hoe_rows_cell`` : a different λ per row, all inside that same cell (the same 3 experts);
* ``hoe_rows_any``  : a different λ per row drawn anywhere on the simplex (their cells together reach all 6);
* ``hoe_router``    : a second model with a router expert at the centre, λ at its anchor (per-token routing
                      in every module, mixing the 3 midpoint experts);
* ``rs``            : Rewarded Soups at (0.6, 0.25, 0.15): the single-objective deltas merged into the weights
                      once (outside the timing), so one plain forward pass per token;
* ``mod``           : MOD at (0.6, 0.25, 0.15) over the 3 single-objective models (base + each vertex expert's
                      delta, merged): one forward pass per model and token, each with its own KV cache
                      (:class:`hoe.evaluation.mod.Fusion`).

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
from hoe.evaluation.mod import Fusion
from hoe.experts.targets import find_target_modules
from hoe.io.adapters import LoraWeights
from hoe.model.bundle import load_base_model
from hoe.model.hoe_model import ExpertSpec, HoEModel

ANCHORS = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
OBJECTIVES = ["relevance", "positivity", "brevity"]


def expert_weights(rank: int, seed: int = 0) -> list[dict[str, LoraWeights]]:
    """Random rank-``rank`` factors on every projection, one dict per anchor of ``ANCHORS``."""
    modules = find_target_modules(load_base_model(SMOLLM2))
    g = torch.Generator().manual_seed(seed)
    return [
        {
            m.name: LoraWeights(
                A=0.01 * torch.randn(rank, m.in_features, generator=g),
                B=0.01 * torch.randn(m.out_features, rank, generator=g),
            )
            for m in modules
        }
        for _ in ANCHORS
    ]


def hoe_model(rank: int, router: bool, seed: int = 0) -> HoEModel:
    experts = [ExpertSpec(f"e{i}", tuple(float(a) for a in anchor)) for i, anchor in enumerate(ANCHORS)]
    model = HoEModel(load_base_model(SMOLLM2), OBJECTIVES, experts, expert_weights(rank, seed), SMOLLM2)
    if router:
        model.add_router("centre", [1 / 3, 1 / 3, 1 / 3])
    return model.eval()


def merged_model(parts: list[tuple[float, dict[str, LoraWeights]]]) -> torch.nn.Module:
    """The base model with ``Σ λ B A`` of ``parts`` (λ, factors) added to its weights: a plain model."""
    model = load_base_model(SMOLLM2)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in parts[0][1]:
            modules[name].weight += sum(lam * (w[name].B @ w[name].A) for lam, w in parts)
    return model.eval()


def mod_generate(models: list[tuple[float, torch.nn.Module]]):
    """``generate`` of MOD over ``models`` (λ_i, model): the first generates, a fresh :class:`Fusion` per call
    runs the others on the same tokens."""
    (w0, first), others = models[0], models[1:]

    def fn(ids: torch.Tensor, **kw) -> torch.Tensor:
        fusion = Fusion(w0, others, torch.ones_like(ids))
        return first.generate(ids, attention_mask=torch.ones_like(ids), logits_processor=[fusion], **kw)

    return fn


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
    weights, lam = expert_weights(args.rank), [0.6, 0.25, 0.15]
    rs = merged_model([(lam[i], weights[i]) for i in range(3)])
    tuned = [merged_model([(1.0, weights[i])]) for i in range(3)]
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
        "rs": lambda ids, **kw: rs.generate(ids, **kw),
        "mod": mod_generate(list(zip(lam, tuned))),
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
