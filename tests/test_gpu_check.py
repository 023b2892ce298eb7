"""benchmarks/gpu_check.sh runs every part in its dry run (tiny shapes on the CPU), so the script a GPU session
runs cannot rot between the sessions that have one (timings are never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_dry_run_runs_every_part_and_writes_one_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] and list(report["parts"]) == [
        "env",
        "decode",
        "train_router",
        "serve",
        "adapter",
    ]
    assert all(p["ok"] for p in report["parts"].values())
    assert (
        sum(line.startswith("| ") for line in done.stdout.splitlines()) == 1 + 5
    )  # header + one row per part
    parts = report["parts"]
    assert len(parts["train_router"]["utility"]) == 2 and parts["serve"]["batched"]["completion_tokens"] > 0
    assert (
        parts["adapter"]["rank"] == 12 and parts["adapter"]["max_abs_dlogit"] < 1e-4
    )  # 3 experts x rank 4, fp32
