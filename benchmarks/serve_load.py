"""Benchmark: ``hoe serve`` under bounded concurrent load on loopback, with mixed preferences.

Starts the server in this process (uvicorn on 127.0.0.1, a free port) twice: batching requests that arrive
together (``--max-batch-rows``, default 16) and one request at a time (max batch rows 1). Each run sends
``--requests`` chat requests from ``--concurrency`` client threads, each with its own preference drawn from
the simplex and its own seed, and reports p50 / p95 latency, completion tokens per second and the
throughput gain of batching. One JSON line.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/serve_load.py --model runs/demo/bundle [--requests 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import torch
import uvicorn

from hoe.server import Limits, load

PROMPTS = ["What is a star?", "Give me a tip for sleeping well.", "Describe the sea.", "How do bees talk?"]


def serve(model: str, rows: int, max_tokens: int):
    app, served = load(model, name="bench", limits=Limits(max_tokens=max_tokens, max_batch_rows=rows,
                                                          batch_wait_s=0.02), scores=False)  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, served, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def load_run(url: str, objectives: list[str], args) -> dict:
    torch.manual_seed(0)
    prefs = torch.distributions.Dirichlet(torch.ones(len(objectives))).sample((args.requests,)).tolist()
    client = httpx.Client(timeout=600)

    def one(i: int) -> tuple[float, int]:
        body = {"model": "bench", "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                "max_tokens": args.max_tokens, "temperature": 0.7, "seed": i,
                "preference": dict(zip(objectives, prefs[i]))}  # fmt: skip
        start = time.perf_counter()
        r = client.post(f"{url}/v1/chat/completions", json=body)
        r.raise_for_status()
        return time.perf_counter() - start, r.json()["usage"]["completion_tokens"]

    start = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(one, range(args.requests)))
    seconds = time.perf_counter() - start
    latencies = sorted(r[0] for r in results)
    tokens = sum(r[1] for r in results)
    return {"p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3),
            "tokens_per_s": round(tokens / seconds, 2), "seconds": round(seconds, 2),
            "completion_tokens": tokens}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="runs/demo/bundle")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch-rows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report = {"benchmark": "serve_load", "model": args.model, "requests": args.requests,
              "concurrency": args.concurrency, "max_tokens": args.max_tokens}  # fmt: skip
    for name, rows in (("batched", args.max_batch_rows), ("one_at_a_time", 1)):
        server, served, url = serve(args.model, rows, args.max_tokens)
        try:
            report[name] = load_run(url, served.objectives, args)
            report[name]["mean_batch_rows"] = round(statistics.mean(served.engine.batch_rows), 2)
        finally:
            server.should_exit = True
            served.engine.close()
    report["batching_throughput_gain"] = round(
        report["batched"]["tokens_per_s"] / report["one_at_a_time"]["tokens_per_s"], 3
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
