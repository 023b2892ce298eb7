"""Benchmark: ``hoe export --format adapter`` on the smol3 bundle (SmolLM2 + the committed experts and merges).

Builds the bundle, exports the 1/K grid (default K = 10: 66 adapters), and reports the adapters' ranks and
sizes, the generated ``vllm serve`` line, and for a few λ the largest |Δlogit| between PEFT over the base with
the exported adapter and HoE without routers (fp32, 12 random token ids). One JSON line.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/adapter_export.py [--grid 10]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "vertex": [1, 0, 0],
    "edge": [0.7, 0.3, 0.0],
    "midpoint": [0.5, 0.0, 0.5],
    "interior": [0.2, 0.3, 0.5],
}


def _dtype(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return str(f.get_tensor(next(iter(f.keys()))).dtype).removeprefix("torch.")


def main() -> None:
    from peft import PeftModel

    from hoe import HoEModel, build, export
    from hoe.bundle.folder import load_base_model
    from hoe.export.adapter import read_index

    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(2)
    smol3 = ROOT / "experts" / "smol3"
    experts = {o: smol3 / o for o in ("relevance", "positivity", "brevity")}
    experts |= {p.name: p for p in sorted((smol3 / "merged").iterdir())}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = build("smollm2-135m-instruct", experts, tmp / "bundle")
        start = time.perf_counter()
        out = export(bundle, None, tmp / "grid", format="adapter", grid=args.grid)
        seconds = time.perf_counter() - start
        index = read_index(out)
        sizes = [
            (out / a["path"] / "adapter_model.safetensors").stat().st_size for a in index["adapters"].values()
        ]
        report = {
            "benchmark": "adapter_export", "grid": args.grid, "adapters": len(index["adapters"]),
            "export_seconds": round(seconds, 1),
            "ranks": dict(sorted(collections.Counter(a["rank"] for a in index["adapters"].values()).items())),
            "mb_min_max": [round(min(sizes) / 2**20, 2), round(max(sizes) / 2**20, 2)],
            "dtype": _dtype(out / next(iter(index["adapters"])) / "adapter_model.safetensors"),
            "vllm": index["vllm"].replace(str(out.resolve()), "DIR")[:300] + " …",
        }  # fmt: skip
        hoe = HoEModel.from_pretrained(bundle).eval()
        ids = torch.randint(0, 49152, (1, 12), generator=torch.Generator().manual_seed(0))
        report["max_abs_dlogit"] = {}
        for name, lam in CASES.items():
            folder = export(bundle, lam, tmp / name, format="adapter")
            peft = PeftModel.from_pretrained(load_base_model(hoe.base_ref), str(folder)).eval()
            with torch.no_grad():
                want = hoe(input_ids=ids, expert_weights=hoe.lora_only_weights(lam)).logits
                got = peft(input_ids=ids).logits
            report["max_abs_dlogit"][name] = float((got - want).abs().max())
        report["logit_scale"] = float(want.abs().max())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
