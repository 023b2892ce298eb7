"""Where should router experts go? Tchebycheff utility lost by HoE LoRA-only across the preference lattice.

For each λ of the lattice (step 1 / ``--divisions``) that is not a LoRA expert's anchor, HoE without routers
mixes the nearest experts by preference routing. A router at λ can at best do what its experts do token by
token, so a place where the mixture is worse than simply answering with one of the bundle's experts is a place
where routing has something to win. Reported per λ:

    u(λ, x)  = mean over prompts of  min_{i: λ_i > 0} λ_i (r_i(x) - z*_i)         (Tchebycheff utility)
    loss(λ)  = max_e u(λ, expert e) - u(λ, LoRA-only at λ)

with z* from data in the spirit of ``hoe train-router``'s default (each objective's best mean among the
single-objective experts plus 0.1 × its std over prompts, here pooled over all the bundle's experts). The
ranking uses the mean of per-prompt utilities (``scripts/eval_router.py`` reports it beside the utility of
the mean rewards, u(R̄), which is what a router maximises); the smol3 routers' second anchor was chosen by it. Measured on the first ``--prompts`` *train* prompts
(one seeded sample each, the same seeds for every mixture) so that choosing anchors does not peek at the
`eval` prompts the routers are judged on.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/router_anchors.py --model runs/demo/bundle [--prompts 48]

Writes ``--out`` (JSON) and prints a Markdown table, largest loss first.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hoe.data.prompts import load_prompts
from hoe.evaluation.mixtures import FixedMixture, lora_only_weights
from hoe.evaluation.paired import seeded_rewards
from hoe.generation.text import load_tokenizer
from hoe.io.atomic import atomic_file
from hoe.model.hoe_model import HoEModel
from hoe.objectives import ObjectiveContext, build_objectives
from hoe.preference import simplex_lattice
from hoe.provenance import command_line, versions
from hoe.scalarisation.tchebycheff import tchebycheff_utility


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True, help="a bundle without routers")
    ap.add_argument("--prompts", type=int, default=48, help="first N train prompts")
    ap.add_argument("--divisions", type=int, default=4)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--margin", type=float, default=0.1)
    ap.add_argument("--out", type=Path, default=Path("runs/router_anchors.json"))
    args = ap.parse_args()
    start = time.perf_counter()
    model = HoEModel.from_pretrained(args.model)
    tokenizer = load_tokenizer(model.base_ref)
    objectives = build_objectives(model.objectives, ObjectiveContext(tokenizer=tokenizer, max_new_tokens=48))
    prompts = [p.text for p in load_prompts("smol", "train")][: args.prompts]
    m, experts = len(model.objectives), model.experts

    def rewards(weights: torch.Tensor) -> torch.Tensor:
        return seeded_rewards(
            FixedMixture(model, weights), tokenizer, prompts, objectives, None, args.samples
        )

    per_expert = {e.name: rewards(torch.eye(len(experts))[k]) for k, e in enumerate(experts)}
    print(f"experts done after {time.perf_counter() - start:.0f} s", flush=True)
    single = [e.name for e in experts if max(e.anchor) == 1]
    best = torch.stack([per_expert[n].mean(0) for n in single]).max(0).values
    std = torch.cat(list(per_expert.values())).std(0)
    z_star = best + args.margin * std
    anchors = {tuple(round(a, 6) for a in e.anchor) for e in experts}
    rows = []
    for lam in simplex_lattice(m, args.divisions):
        if tuple(round(float(a), 6) for a in lam) in anchors:
            continue
        w = lora_only_weights(model, lam)
        r = rewards(w)
        u = float(tchebycheff_utility(r, lam, z_star).mean())
        u_exp = {n: float(tchebycheff_utility(x, lam, z_star).mean()) for n, x in per_expert.items()}
        best_name = max(u_exp, key=u_exp.get)
        rows.append(
            {
                "preference": dict(zip(model.objectives, lam.tolist())),
                "lora_only_weights": dict(zip([e.name for e in experts], [round(float(x), 4) for x in w])),
                "rewards": dict(zip(model.objectives, [round(float(x), 4) for x in r.mean(0)])),
                "utility_lora_only": round(u, 4),
                "best_expert": best_name,
                "utility_best_expert": round(u_exp[best_name], 4),
                "loss": round(u_exp[best_name] - u, 4),
            }
        )
        print(f"{rows[-1]['preference']}: loss {rows[-1]['loss']:+.4f}", flush=True)
    rows.sort(key=lambda row: -row["loss"])
    report = {
        "z_star": dict(zip(model.objectives, [round(float(x), 4) for x in z_star])),
        "prompts": len(prompts),
        "split": "train",
        "samples": args.samples,
        "points": rows,
        "seconds": round(time.perf_counter() - start),
        "command": command_line(),
        "versions": versions(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nz* {report['z_star']}\n\n| λ | u LoRA-only | best expert | u best | loss |\n|---|---|---|---|---|"
    )
    for row in rows:
        lam = "/".join(f"{x:g}" for x in row["preference"].values())
        print(
            f"| {lam} | {row['utility_lora_only']:.4f} | {row['best_expert']} | "
            f"{row['utility_best_expert']:.4f} | {row['loss']:+.4f} |"
        )


if __name__ == "__main__":
    main()
