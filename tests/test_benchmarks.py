"""The decode benchmark runs end to end on a tiny random Llama, so the script the decode figures come from
cannot rot between the sessions that measure with it (timings are never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_decode_benchmark_reports_every_mode_and_the_op_counts_of_its_layer_table():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "decode.py"), "--shape", "tiny", "--repeats", "1",
           "--new-tokens", "4", "--batches", "1", "--no-baselines"]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    modes = ("peft", "hoe_one", "hoe_merged", "hoe_rows", "hoe_router")
    assert all(report["batch1"][f"{m}_over_base"] > 0 for m in modes)
    assert set(report["call_setup_ms"]) == {
        f"{m}_{k}" for m in ("one", "rows", "routers") for k in ("new", "same")
    }
    # The tiny shape has 2 blocks × 7 adapted projections: each adds the ops of the layer's table per step.
    ops = report["ops_per_step"]
    base = ops["batch1"]["base_ops"]
    assert ops["batch1"]["hoe_merged_ops"] == base
    assert ops["batch1"]["hoe_one_ops"] == base + 14 * 1
    assert ops["batch8"]["hoe_rows_ops"] == base + 14 * 2
    assert ops["batch8"]["hoe_router_ops"] == base + 14 * 4
