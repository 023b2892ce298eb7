"""Benchmark: extracting one LoRA expert (task-SVD) on SmolLM2-135M shapes.

Compares, in one run with interleaved repeats, each method in its own subprocess (clean peak RSS):

* ``hoe``       : ``hoe.extract`` end to end (streamed task vector from the two safetensors files, per-module
                  truncated SVD, adapter written), with sparsity 0, with the paper's 0.2, and with randomized SVD;
* ``plain_svd`` : the obvious script: load both state dicts, ``torch.linalg.svd`` every full delta, truncate;
* ``peft_svd``  : PEFT's ``add_weighted_adapter(..., combination_type="svd")`` on the task vector held as a
                  full-rank LoRA adapter of the loaded base; timed end to end (load, build the adapter, SVD)
                  and, separately, that call alone.

Checkpoints: a random Llama with SmolLM2-135M's shapes (30 layers, d=576, d_ff=1536, GQA 9/3 heads) and a
"fine-tune" = base + a full-rank random delta (the SVD cost does not depend on the values).
Prints one JSON line: median seconds and peak RSS per method, ratios, model size on disk.

    .venv/bin/python benchmarks/extract.py [--rank 16] [--repeats 3] [--workdir /tmp/hoe-bench-extract]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

METHODS = ["hoe", "hoe_sparse", "hoe_randomized", "plain_svd", "peft_svd"]


def smollm2_config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
    )


def prepare(workdir: Path) -> tuple[Path, Path]:
    from transformers import LlamaForCausalLM

    base, tuned = workdir / "base", workdir / "tuned"
    if (tuned / "model.safetensors").is_file():
        return base, tuned
    torch.manual_seed(0)
    model = LlamaForCausalLM(smollm2_config())
    model.save_pretrained(base)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("proj.weight"):
                p += 1e-3 * torch.randn_like(p)
    model.save_pretrained(tuned)
    return base, tuned


def target_deltas(base: Path, tuned: Path):
    from safetensors.torch import load_file

    b, t = load_file(str(base / "model.safetensors")), load_file(str(tuned / "model.safetensors"))
    return {k[: -len(".weight")]: t[k] - b[k] for k in b if k.endswith("proj.weight")}


def run_hoe(base: Path, tuned: Path, rank: int, sparsity: float, svd: str = "auto") -> dict:
    from hoe import extract

    out = Path(tempfile.mkdtemp()) / "experts"
    start = time.perf_counter()
    extract(str(base), {"x": tuned}, rank=rank, out=out, sparsity=sparsity, svd=svd, progress=False)
    return {"seconds": time.perf_counter() - start}


def run_plain(base: Path, tuned: Path, rank: int) -> dict:
    start = time.perf_counter()
    factors = {}
    for name, delta in target_deltas(base, tuned).items():
        U, S, Vh = torch.linalg.svd(delta)
        factors[name] = (U[:, :rank] * S[:rank].sqrt(), S[:rank].sqrt()[:, None] * Vh[:rank])
    return {"seconds": time.perf_counter() - start}


def run_peft(base: Path, tuned: Path, rank: int) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    start_total = time.perf_counter()
    deltas = target_deltas(base, tuned)
    model = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
    full = {n: min(d.shape) for n, d in deltas.items()}
    config = LoraConfig(
        r=576, lora_alpha=576, target_modules=list(deltas), rank_pattern=full, alpha_pattern=full
    )
    model = get_peft_model(model, config, adapter_name="full")
    modules = dict(model.base_model.model.named_modules())
    with torch.no_grad():  # B A = Δ exactly: one factor is the identity
        for name, d in deltas.items():
            layer = modules[name]
            out_f, in_f = d.shape
            if in_f <= out_f:
                layer.lora_A["full"].weight.copy_(torch.eye(in_f))
                layer.lora_B["full"].weight.copy_(d)
            else:
                layer.lora_A["full"].weight.copy_(d)
                layer.lora_B["full"].weight.copy_(torch.eye(out_f))
    del deltas
    start = time.perf_counter()
    # PEFT silently falls back to a linear copy (no SVD) for a single adapter, so pass it twice at 0.5 each
    model.add_weighted_adapter(["full", "full"], [0.5, 0.5], "svd", combination_type="svd", svd_rank=rank)
    end = time.perf_counter()
    return {"seconds": end - start_total, "svd_call_seconds": end - start}


def worker(method: str, base: Path, tuned: Path, rank: int) -> None:
    torch.set_num_threads(2)
    runs = {
        "hoe": lambda: run_hoe(base, tuned, rank, 0.0),
        "hoe_sparse": lambda: run_hoe(base, tuned, rank, 0.2),
        "hoe_randomized": lambda: run_hoe(base, tuned, rank, 0.0, "randomized"),
        "plain_svd": lambda: run_plain(base, tuned, rank),
        "peft_svd": lambda: run_peft(base, tuned, rank),
    }
    result = runs[method]()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def baseline_rss_mb() -> float:
    """Peak RSS of a process that only imports torch, transformers, peft and hoe (the floor of every method)."""
    code = (
        "import resource, torch, transformers, peft, hoe; "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "hoe-bench-extract")
    ap.add_argument("--worker", choices=METHODS)
    args = ap.parse_args()
    base, tuned = prepare(args.workdir)
    if args.worker:
        return worker(args.worker, base, tuned, args.rank)
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):
        for m in METHODS:  # interleaved, so drifting machine load hits every method alike
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                m,
                "--rank",
                str(args.rank),
                "--workdir",
                str(args.workdir),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs[m].append(json.loads(out.strip().splitlines()[-1]))
    size_mb = (base / "model.safetensors").stat().st_size / 2**20
    med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in runs.items()}
    print(
        json.dumps(
            {
                "benchmark": "extract",
                "shapes": "SmolLM2-135M (210 projection matrices)",
                "rank": args.rank,
                "repeats": args.repeats,
                "model_size_mb": round(size_mb, 1),
                "import_floor_rss_mb": round(baseline_rss_mb(), 1),
                "median": {m: {k: round(v, 2) for k, v in d.items()} for m, d in med.items()},
                "hoe_rss_over_model_size": round(med["hoe"]["peak_rss_mb"] / size_mb, 2),
                "hoe_time_over_peft": round(med["hoe"]["seconds"] / med["peft_svd"]["seconds"], 3),
                "hoe_time_over_peft_svd_call": round(
                    med["hoe"]["seconds"] / med["peft_svd"]["svd_call_seconds"], 3
                ),
                "hoe_randomized_time_over_peft": round(
                    med["hoe_randomized"]["seconds"] / med["peft_svd"]["seconds"], 3
                ),
                "hoe_time_over_plain_svd": round(med["hoe"]["seconds"] / med["plain_svd"]["seconds"], 3),
                "torch_threads": 2,
            }
        )
    )


if __name__ == "__main__":
    main()
