"""Evidence for a trained router expert (issue 10): at the router's anchor λ, HoE full vs HoE LoRA-only vs the
linear soup, on the smol `eval` prompts.

For each method, ``--samples`` responses per eval prompt (chat template, T = 0.7, 48 new tokens; sample s of
prompt i seeded ``s * n + i`` for every method, so differences are paired by prompt and by seed), scored on the
bundle's objectives. Reported per method, with the router's own z* (from its training record):

* mean ± s.e. over prompts of each reward;
* the Tchebycheff utility of the mean rewards, u(R̄) = min_{λ_i>0} λ_i (R̄_i - z*_i): what the router was
  trained to maximise (Eq. 6 with R the expected reward; OMD drives it with batch means), with its s.e. from
  a bootstrap over prompts (2000 resamples, the same for every method, so differences are paired);
* the mean over prompts of each prompt's utility min_i λ_i (r_i - z*_i) (a different, noisier quantity: it
  asks every prompt to be balanced);

and the paired differences HoE full − each other method. The per-prompt rewards are kept in the JSON.

* hoe       the bundle at λ: preference routing reaches the router expert (token-level mixing);
* hoe-lora  the same LoRA experts mixed by preference routing over the LoRA anchors alone (no router);
* soup      Σ_i λ_i B_i A_i of the single-objective experts (Rewarded Soups over the LoRA experts).

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/eval_router.py --model runs/routers/centroid [--samples 4]
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/eval_router.py --model runs/demo/bundle \
        --router-folder experts/smol3/routers/centroid

Writes ``eval_router.json`` into ``--router-folder`` (a router saved by ``hoe save-router``, attached to
``--model`` here unless it has it), or else into ``--model`` (a bundle made by ``hoe train-router``), and
prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hoe.bundle.router_folder import TRAINING_RECORD, attach_router
from hoe.data.prompts import load_prompts
from hoe.evaluation.metrics import bootstrap_counts
from hoe.evaluation.mixtures import FixedMixture, lora_only_weights
from hoe.evaluation.paired import mean_se, seeded_rewards
from hoe.generation.text import load_tokenizer
from hoe.io.atomic import atomic_file
from hoe.model.hoe_model import HoEModel
from hoe.objectives import ObjectiveContext, build_objectives
from hoe.provenance import command_line, versions
from hoe.scalarisation.tchebycheff import tchebycheff_utility

BOOTSTRAP = 2000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True, help="a bundle with the router")
    ap.add_argument("--router-folder", type=Path, help="the router's folder (hoe save-router)")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=0, help="first N eval prompts (0: all)")
    args = ap.parse_args()
    start = time.perf_counter()
    where = args.router_folder or args.model
    if not (where / TRAINING_RECORD).is_file():
        raise SystemExit(f"error: {where} has no {TRAINING_RECORD}: the router's z* comes from it")
    record = json.loads((where / TRAINING_RECORD).read_text())
    model = HoEModel.from_pretrained(args.model)
    if args.router_folder:
        if record["router"] in {r.name for r in model.routers}:
            raise SystemExit(f"error: {args.model} has a router named {record['router']!r} already")
        attach_router(model, args.router_folder)  # refused unless these are the experts it was trained with
    router = next(r for r in model.routers if r.name == record["router"])
    lam = torch.tensor(router.anchor, dtype=torch.float64)
    z_star = torch.tensor([record["z_star"][o] for o in model.objectives], dtype=torch.float64)
    tokenizer = load_tokenizer(model.base_ref)
    objectives = build_objectives(model.objectives, ObjectiveContext(tokenizer=tokenizer, max_new_tokens=48))
    prompts = [p.text for p in load_prompts("smol", "eval")]
    prompts = prompts[: args.prompts] if args.prompts else prompts
    methods = {
        "hoe": (model, lam.tolist()),
        "hoe-lora": (FixedMixture(model, lora_only_weights(model, lam)), None),
        "soup": (FixedMixture(model, model.soup_weights(lam.tolist())), None),
    }
    matrices, utilities = {}, {}
    for name, (m, pref) in methods.items():
        matrices[name] = seeded_rewards(m, tokenizer, prompts, objectives, pref, args.samples, args.batch)
        utilities[name] = tchebycheff_utility(matrices[name], lam, z_star)  # (n,)
        print(f"{name}: done after {time.perf_counter() - start:.0f} s", flush=True)
    counts = bootstrap_counts(len(prompts), BOOTSTRAP, seed=0)  # (B, n), shared: differences are paired
    boot = {name: tchebycheff_utility(counts @ r / len(prompts), lam, z_star) for name, r in matrices.items()}
    report = {
        "router": router.name,
        "anchor": dict(zip(model.objectives, router.anchor)),
        "target_point": dict(zip(model.objectives, z_star.tolist())),
        "eval_prompts": len(prompts),
        "samples_per_prompt": args.samples,
        "results": {
            name: {
                **{o: mean_se(r[:, j]) for j, o in enumerate(model.objectives)},
                "utility": {
                    "mean": round(float(tchebycheff_utility(r.mean(0, keepdim=True), lam, z_star)), 4),
                    "se": round(float(boot[name].std()), 4),
                },
                "per_prompt_utility": mean_se(utilities[name]),
            }
            for name, r in matrices.items()
        },
        "hoe_minus": {
            name: {
                **{o: mean_se(matrices["hoe"][:, j] - r[:, j]) for j, o in enumerate(model.objectives)},
                "utility": {
                    "mean": round(
                        float(tchebycheff_utility(matrices["hoe"].mean(0, keepdim=True), lam, z_star))
                        - float(tchebycheff_utility(r.mean(0, keepdim=True), lam, z_star)),
                        4,
                    ),
                    "se": round(float((boot["hoe"] - boot[name]).std()), 4),
                },
                "per_prompt_utility": mean_se(utilities["hoe"] - utilities[name]),
            }
            for name, r in matrices.items()
            if name != "hoe"
        },
        "bootstrap": {"resamples": BOOTSTRAP, "seed": 0},
        "per_prompt": {
            name: [[round(float(x), 6) for x in row] for row in r] for name, r in matrices.items()
        },
        "seconds": round(time.perf_counter() - start),
        "command": command_line(),
        "versions": versions(),
    }
    with atomic_file(where / "eval_router.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    columns = [*model.objectives, "utility", "per_prompt_utility"]
    header = "| method | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns)
    print(f"\nrouter {router.name} at {report['anchor']}; z* {report['target_point']}\n\n{header}")
    for name, res in report["results"].items():
        cells = [f"{res[c]['mean']:.3f} ± {res[c]['se']:.3f}" for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nHoE full − method, paired by prompt: mean ± s.e. (z)\n")
    for name, res in report["hoe_minus"].items():
        cells = [
            f"{res[c]['mean']:+.3f} ± {res[c]['se']:.3f} ({res[c]['mean'] / max(res[c]['se'], 1e-12):+.1f})"
            for c in columns
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
