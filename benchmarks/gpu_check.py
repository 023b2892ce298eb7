"""Every GPU measurement in one command of at most 8 minutes, for the day a GPU is at hand (CI never has one).

    benchmarks/gpu_check.sh [--out gpu_check.json]        # on a CUDA machine, from a checkout + pip install -e .
    benchmarks/gpu_check.sh --dry-run                     # every part at a tiny shape on the CPU (in the tests)

Parts, each printing one table row and each with its own time limit (a part that fails or runs out of time
is reported as such and the others still run):

1. ``env``: torch, CUDA and the GPU's name;
2. ``decode``: ``benchmarks/decode.py --device cuda --shape llama2-7b --compile`` at batch 1, 8 and 32 (base, one
   λ, merged, a λ per row, routers; eager and compiled; tokens/s as ratios to the base);
3. ``train_router``: a 2-step ``hoe train-router`` in bf16 over the smol3 bundle;
4. ``serve``: ``hoe serve`` with 16 concurrent requests of mixed λ (``benchmarks/serve_load.py``);
5. ``adapter``: ``hoe export --format adapter`` at a mixed λ, loaded with PEFT over the base in bf16, against
   HoE without routers in bf16: the largest |Δlogit|.

Everything goes to one JSON file (``--out``). The dry run uses a tiny random Llama with SmolLM2's tokenizer,
three random LoRA experts and a router, so that every part runs in seconds on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = ["relevance", "positivity", "brevity"]
MIXED = [0.5, 0.25, 0.25]
BUDGET_S = {"decode": 240, "train_router": 90, "serve": 60, "adapter": 60}  # 7.5 min with start-up


def run_json(cmd: list[str], timeout: float) -> dict:
    """Run a benchmark script; its last stdout line is its JSON report."""
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(
            done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_env(args) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "gpu": torch.cuda.get_device_name(0) if cuda else "none (cpu)", "device": args.device}  # fmt: skip


def part_decode(args) -> dict:
    cmd = [sys.executable, "benchmarks/decode.py", "--device", args.device, "--no-baselines"]
    if args.dry_run:
        cmd += ["--shape", "tiny", "--repeats", "1", "--new-tokens", "4", "--batches", "1", "--no-ops"]
    else:
        cmd += ["--shape", "llama2-7b", "--compile", "--batches", "1,8,32", "--repeats", "3", "--no-ops"]
    report = run_json(cmd, BUDGET_S["decode"])
    return {k: v for k, v in report.items() if k.startswith("batch")}


def make_bundle(work: Path, args) -> Path:
    """The bundle the next parts use: the smol3 bundle on a GPU, a tiny random one in the dry run."""
    from hoe import build

    smol3 = ROOT / "experts" / "smol3"
    if not args.dry_run:
        experts = {o: smol3 / o for o in OBJECTIVES}
        experts |= {p.name: p for p in sorted((smol3 / "merged").iterdir())}
        routers = sorted(p for p in (smol3 / "routers").iterdir() if p.is_dir())
        return build("smollm2-135m-instruct", experts, work / "bundle", trained_routers=routers)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hoe.experts.targets import find_target_modules
    from hoe.generation.text import load_tokenizer
    from hoe.io.adapters import LoraWeights
    from hoe.model.hoe_model import ExpertSpec, HoEModel

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    base = LlamaForCausalLM(config)
    base.save_pretrained(work / "base")
    tokenizer.save_pretrained(work / "base")
    g = torch.Generator().manual_seed(1)
    weights = [
        {m.name: LoraWeights(A=0.2 * torch.randn(4, m.in_features, generator=g),
                             B=0.2 * torch.randn(m.out_features, 4, generator=g)) for m in find_target_modules(base)}
        for _ in OBJECTIVES
    ]  # fmt: skip
    specs = [ExpertSpec(o, tuple(float(i == k) for i in range(3))) for k, o in enumerate(OBJECTIVES)]
    model = HoEModel(base, OBJECTIVES, specs, weights, str(work / "base"))
    model.add_router("centre", [1 / 3, 1 / 3, 1 / 3])
    return model.save_pretrained(work / "bundle")


def part_train_router(args, bundle: Path, work: Path) -> dict:
    steps, batch = 2, (4 if args.dry_run else 16)
    cmd = [sys.executable, "-m", "hoe", "train-router", "--model", str(bundle), "--anchor",
           ",".join(map(str, MIXED)), "--steps", str(steps), "--batch-size", str(batch), "--max-new-tokens",
           "8" if args.dry_run else "48", "--dtype", "float32" if args.dry_run else "bfloat16", "--device",
           args.device, "--out", str(work / "trained"), "--no-progress", "--calibration-prompts", "4"]  # fmt: skip
    start = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=BUDGET_S["train_router"], env=env, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    history = json.loads(next((work / "trained").rglob("hoe_router_training.json")).read_text())["history"]
    return {"steps": steps, "batch": batch, "seconds": round(time.perf_counter() - start, 1),
            "seconds_per_step": round(sum(h["seconds"] for h in history) / len(history), 2),
            "utility": [round(h["utility"], 4) for h in history]}  # fmt: skip


def part_serve(args, bundle: Path) -> dict:
    cmd = [sys.executable, "benchmarks/serve_load.py", "--model", str(bundle), "--requests", "16", "--concurrency",
           "16", "--max-tokens", "8" if args.dry_run else "64"]  # fmt: skip
    report = run_json(cmd, BUDGET_S["serve"])
    return {k: report[k] for k in ("batched", "one_at_a_time", "batching_throughput_gain")}


def part_adapter(args, bundle: Path, work: Path) -> dict:
    import torch
    from peft import PeftModel

    from hoe import HoEModel, export
    from hoe.bundle.folder import load_base_model

    dtype = torch.float32 if args.dry_run else torch.bfloat16
    out = export(bundle, MIXED, work / "adapter", format="adapter")
    hoe = HoEModel.from_pretrained(bundle, dtype=dtype, device=args.device).eval()
    peft = PeftModel.from_pretrained(load_base_model(hoe.base_ref, dtype), str(out)).to(args.device).eval()
    ids = torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(0)).to(args.device)
    with torch.no_grad():
        want = hoe(input_ids=ids, expert_weights=hoe.lora_only_weights(MIXED)).logits.float()
        got = peft(input_ids=ids).logits.float()
    config = json.loads((out / "adapter_config.json").read_text())
    return {"dtype": str(dtype).removeprefix("torch."), "rank": config["r"],
            "max_abs_dlogit": float((got - want).abs().max()), "logit_scale": float(want.abs().max())}  # fmt: skip


def row(name: str, result: dict) -> str:
    text = json.dumps(result, separators=(",", ":"))
    return f"| {name:<12} | {text[:150] + ('…' if len(text) > 150 else '')} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="every part at a tiny shape on the CPU")
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = ap.parse_args()
    args.device = "cpu" if args.dry_run else "cuda"
    report: dict = {"dry_run": args.dry_run, "parts": {}}
    start = time.perf_counter()
    print("| part         | result |\n|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = None
        parts = [
            ("env", lambda: part_env(args)),
            ("decode", lambda: part_decode(args)),
            ("train_router", lambda: part_train_router(args, bundle, work)),
            ("serve", lambda: part_serve(args, bundle)),
            ("adapter", lambda: part_adapter(args, bundle, work)),
        ]
        for name, fn in parts:
            t0 = time.perf_counter()
            try:
                if name == "train_router":  # the bundle the later parts use; its failure fails them each
                    bundle = make_bundle(work, args)
                elif bundle is None and name in ("serve", "adapter"):
                    raise RuntimeError("no bundle: building it failed (see train_router)")
                result = {"ok": True, **fn()}
            except Exception as e:  # noqa: BLE001 - one part's failure is reported, the others still run
                result = {"ok": False, "error": f"{type(e).__name__}: {e}"[:400]}
            result["seconds"] = result.get("seconds", round(time.perf_counter() - t0, 1))
            report["parts"][name] = result
            print(row(name, result), flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{sum(p['ok'] for p in report['parts'].values())} of {len(parts)} parts ran; {args.out} "
          f"({report['seconds']} s)")  # fmt: skip
    sys.exit(0 if all(p["ok"] for p in report["parts"].values()) else 1)


if __name__ == "__main__":
    main()
