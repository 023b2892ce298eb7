"""Benchmark: decoding cost of HoE against its plain base model (BENCH.md §2–§3).

6 LoRA experts of rank 16 (random weights: cost does not depend on them) on every block projection, anchored
at the vertices and edge midpoints of the 3-objective simplex; greedy decoding of exactly ``--new-tokens``.
Modes, each against the base model run the same way, interleaved in one process:

* ``base``       : the plain model;
* ``peft``       : one PEFT LoRA adapter of rank 16 on the same projections (what one fixed-λ adapter costs);
* ``hoe_one``    : one λ for the batch, (0.6, 0.25, 0.15) (the gate folded into Bᵀ: one op per layer);
* ``hoe_merged`` : the same λ with ``merge_single_preference()`` (the base model's ops exactly);
* ``hoe_rows``   : a different λ per row anywhere on the simplex (two ops per layer);
* ``hoe_router`` : a model with a router expert at the centre, λ per row at it and around it (four);
* ``rs``         : Rewarded Soups at (0.6, 0.25, 0.15): deltas merged once, a plain forward per token;
* ``mod``        : MOD over the 3 single-objective models (one forward per model and token,
                   :class:`hoe.evaluation.mod.Fusion`).

Reported (one JSON line): ops per decode step (leaf aten ops, views and allocations excluded,
`op_count.ops_per_decode_step` beside this script) and their ratio to base, at batch 1 and 8; the milliseconds a
call spends writing its state into the layers before it decodes, with a new λ and with the last call's
(``call_setup_ms``, median; counted in every generate call's tokens/s too); median tokens/s
and its ratio to base at each batch size; with ``--compile`` the compiled modes too (static KV cache,
``torch.compile(fullgraph=True)``, CUDA graphs on a GPU), which would raise on a graph break.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/decode.py [--dtype bfloat16] [--compile] [--repeats 5]
    python benchmarks/decode.py --device cuda --shape llama2-7b --compile     # BENCH.md §3 on a GPU
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/decode.py --shape llama2-7b-cpu --compile --no-baselines
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hoe.backbones import SMOLLM2
from hoe.bundle.folder import load_base_model
from hoe.evaluation.mod import Fusion
from hoe.experts.targets import find_target_modules
from hoe.io.adapters import LoraWeights
from hoe.model.hoe_model import ExpertSpec, HoEModel
from op_count import ops_per_decode_step  # noqa: E402  (beside this script)

ANCHORS = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
OBJECTIVES = ["relevance", "positivity", "brevity"]
LAMBDA = [0.6, 0.25, 0.15]
SHAPES = {
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000),
    "llama2-7b-cpu": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=2, num_attention_heads=32,
                          num_key_value_heads=32, vocab_size=512),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=512),
}  # fmt: skip
"""Random-weight Llama shapes (``--shape``); the default, ``smollm2``, is the built-in backbone. ``llama2-7b-cpu``
is two of Llama-2-7B's blocks with a 512-token vocabulary: the 7B projections' decoding cost on a machine the
whole model does not fit (a CPU), the experts' rows adding 1.85 % to the bytes and FLOPs a step reads, as at 7B
(where SmolLM2's narrow projections make them 10.9 %)."""


def base_model(shape: str, dtype: torch.dtype, device: str) -> torch.nn.Module:
    if shape == "smollm2":
        return load_base_model(SMOLLM2, dtype).to(device)
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**SHAPES[shape], max_position_embeddings=4096))
    return model.to(dtype).eval()


def expert_weights(model, rank: int, seed: int = 0) -> list[dict[str, LoraWeights]]:
    """Random rank-``rank`` factors on every block projection, one dict per anchor of ``ANCHORS``."""
    modules = find_target_modules(model)
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


def hoe_model(make_base, weights, router: bool) -> HoEModel:
    experts = [ExpertSpec(f"e{i}", tuple(float(a) for a in anchor)) for i, anchor in enumerate(ANCHORS)]
    model = HoEModel(make_base(), OBJECTIVES, experts, weights)
    if router:
        model.add_router("centre", [1 / 3, 1 / 3, 1 / 3])
    return model.eval()


def merged_model(make_base, parts: list[tuple[float, dict[str, LoraWeights]]]) -> torch.nn.Module:
    """A base model with ``Σ λ B A`` of ``parts`` (λ, factors) added to its weights: a plain model (RS at λ;
    a single-objective model at a vertex)."""
    model = make_base()
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in parts[0][1]:
            w = modules[name].weight
            w += sum(lam * (f[name].B @ f[name].A) for lam, f in parts).to(w)
    return model


def peft_model(make_base, rank: int) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    model = make_base()
    targets = sorted({m.name.rpartition(".")[2] for m in find_target_modules(model)})
    peft = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    return peft.eval()


def mod_generate(models: list[tuple[float, torch.nn.Module]]):
    """``generate`` of MOD over ``models`` (λ_i, model): the first generates, a fresh :class:`Fusion` per call
    runs the others on the same tokens."""
    (w0, first), others = models[0], models[1:]

    def fn(ids: torch.Tensor, **kw) -> torch.Tensor:
        fusion = Fusion(w0, others, torch.ones_like(ids))
        return first.generate(ids, attention_mask=torch.ones_like(ids), logits_processor=[fusion], **kw)

    return fn


def variants(args, dtype: torch.dtype) -> dict:
    make_base = lambda: base_model(args.shape, dtype, args.device)  # noqa: E731
    base = make_base()
    weights = expert_weights(base, args.rank)
    model, routed = hoe_model(make_base, weights, False), hoe_model(make_base, weights, True)
    merged = hoe_model(make_base, weights, False)
    merged.merge_single_preference()
    torch.manual_seed(1)
    rows = torch.distributions.Dirichlet(torch.ones(3)).sample((64,)).tolist()
    around = (0.7 * torch.full((64, 3), 1 / 3) + 0.3 * torch.tensor(rows)).tolist()  # the centre's cells
    out = {
        "base": lambda ids, **kw: base.generate(ids, **kw),
        "peft": (lambda m: lambda ids, **kw: m.generate(input_ids=ids, **kw))(
            peft_model(make_base, args.rank)
        ),
        "hoe_one": lambda ids, **kw: model.generate(ids, preference=LAMBDA, **kw),
        "hoe_merged": lambda ids, **kw: merged.generate(ids, preference=LAMBDA, **kw),
        "hoe_rows": lambda ids, **kw: model.generate(ids, preference=rows[: ids.shape[0]], **kw),
        "hoe_router": lambda ids, **kw: routed.generate(ids, preference=around[: ids.shape[0]], **kw),
    }
    if not args.no_baselines:
        out["rs"] = (lambda m: lambda ids, **kw: m.generate(ids, **kw))(
            merged_model(make_base, [(LAMBDA[i], weights[i]) for i in range(3)])
        )
        out["mod"] = mod_generate(
            [(LAMBDA[i], merged_model(make_base, [(1.0, weights[i])])) for i in range(3)]
        )
    if args.compile:
        out["base_compiled"] = lambda ids, **kw: base.generate(ids, **compiled(base), **kw)
        for name in ("hoe_one", "hoe_merged", "hoe_rows", "hoe_router"):
            out[f"{name}_compiled"] = (lambda f: lambda ids, **kw: f(ids, compile=True, **kw))(out[name])
    return out


def compiled(model) -> dict:
    from hoe.model.hoe_model import compiled_decoding

    return compiled_decoding(model)


def run(fn, ids: torch.Tensor, new_tokens: int):
    return fn(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)


def tokens_per_second(fn, ids: torch.Tensor, new_tokens: int) -> float:
    sync()
    start = time.perf_counter()
    out = run(fn, ids, new_tokens)
    sync()
    seconds = time.perf_counter() - start
    assert out.shape[1] == ids.shape[1] + new_tokens
    return ids.shape[0] * new_tokens / seconds


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=None, help="default 48 (64 on cuda)")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default=None, help="default float32 on cpu, bfloat16 on cuda")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shape", default="smollm2", choices=["smollm2", *SHAPES])
    ap.add_argument("--batches", default=None, help="comma-separated (default 1,8; 1,8,32 on cuda)")
    ap.add_argument("--compile", action="store_true", help="also the compiled modes")
    ap.add_argument("--no-baselines", action="store_true", help="skip rs and mod")
    ap.add_argument("--no-ops", action="store_true", help="skip the op counts")
    ap.add_argument("--only", default=None, help="comma-separated modes to time (default: all)")
    ap.add_argument("--ops-dtype", default="bfloat16", help="the op counts' dtype (BENCH.md §3: bfloat16)")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype or ("bfloat16" if cuda else "float32"))
    new_tokens = args.new_tokens or (64 if cuda else 48)
    batches = [int(b) for b in (args.batches or ("1,8,32" if cuda else "1,8")).split(",")]
    report: dict = {"benchmark": "decode", "shape": args.shape, "device": args.device, "dtype": str(dtype),
                    "experts": len(ANCHORS), "rank": args.rank, "new_tokens": new_tokens,
                    "repeats": args.repeats, "threads": args.threads, "torch": torch.__version__}  # fmt: skip
    if not args.no_ops:
        report["ops_per_step"] = op_counts(args, getattr(torch, args.ops_dtype))
        print(json.dumps({**report, "part": "ops"}), flush=True)  # kept if the timing fails later
    report["call_setup_ms"] = call_setup(args, dtype)
    print(json.dumps({**report, "part": "setup"}), flush=True)
    fns = variants(args, dtype)
    if args.only:
        fns = {k: v for k, v in fns.items() if k in args.only.split(",")}
    g = torch.Generator().manual_seed(1)
    for batch in batches:
        ids = torch.randint(100, 500, (batch, 16), generator=g).to(args.device)
        for fn in fns.values():  # warm-up (and compilation)
            run(fn, ids, 4)
        runs: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, fn in fns.items():  # interleaved, so machine load drifts hit every mode alike
                runs[name].append(tokens_per_second(fn, ids, new_tokens))
        med = {name: statistics.median(v) for name, v in runs.items()}
        report[f"batch{batch}"] = {
            **{f"{n}_tok_s": round(v, 2) for n, v in med.items()},
            **{f"{n}_over_base": round(v / med[_base_of(n)], 3) for n, v in med.items()
               if not n.startswith("base") and _base_of(n) in med},
        }  # fmt: skip
    print(json.dumps(report))


def _base_of(name: str) -> str:
    return "base_compiled" if name.endswith("_compiled") else "base"


def call_setup(args, dtype: torch.dtype, repeats: int = 7) -> dict:
    """Median ms of :meth:`HoEModel.calling` (each layer's state written for one call, then released) per
    mode at batch 8 (one λ: batch 1): ``<mode>_new``, a λ the last call did not have, and ``<mode>_same``,
    the last call's λ again (the layers hold its state already)."""
    base = base_model(args.shape, dtype, args.device)  # wrapped in place: loaded once
    model = hoe_model(lambda: base, expert_weights(base, args.rank), router=True)
    prefs = {
        "one": lambda i: LAMBDA[:1] + [LAMBDA[1] + 0.01 * i, LAMBDA[2] - 0.01 * i],
        "rows": lambda i: [[0.6 - 0.05 * i, 0.4 + 0.05 * i, 0.0], [0.0, 0.3, 0.7]] * 4,  # no router cell
        "routers": lambda i: [[0.3 + 0.005 * i, 1 / 3, 1 / 3 - 0.005 * i]] * 8,
    }
    out = {}
    for mode, pref in prefs.items():
        times: dict[str, list[float]] = {"new": [], "same": []}
        for i in range(repeats):
            ctx = model.routing_context(pref(i))
            assert ctx.mode == mode, (mode, ctx.mode)
            for kind in ("new", "same"):
                sync()
                start = time.perf_counter()
                with model.calling(ctx):
                    sync()
                times[kind].append(1e3 * (time.perf_counter() - start))
        out.update({f"{mode}_{k}": round(statistics.median(v), 2) for k, v in times.items()})
    return out


def op_counts(args, dtype: torch.dtype) -> dict:
    """Ops per decode step of each eager mode and its ratio to base: batch 1 (base, peft, one λ, merged) and
    batch 8 (every mode), as BENCH.md §3 counts them."""
    saved = args.no_baselines, args.compile
    args.no_baselines, args.compile = True, False
    fns = variants(args, dtype)
    args.no_baselines, args.compile = saved
    out = {}
    for batch in (1, 8):
        ids = torch.randint(100, 500, (batch, 16), generator=torch.Generator().manual_seed(2)).to(args.device)
        counts = {name: ops_per_decode_step(lambda n, f=fn, x=ids: run(f, x, n)) for name, fn in fns.items()}
        out[f"batch{batch}"] = {
            **{f"{n}_ops": round(c, 1) for n, c in counts.items()},
            **{f"{n}_over_base": round(c / counts["base"], 3) for n, c in counts.items() if n != "base"},
        }
    return out


if __name__ == "__main__":
    main()
