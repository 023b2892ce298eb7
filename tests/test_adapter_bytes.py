"""The same adapter is the same bytes, whatever the process: bundle digests (hoe evaluate's keys) depend on it.

PEFT holds ``target_modules`` as a set, whose order follows the string hash, which Python salts per process;
two processes with different ``PYTHONHASHSEED`` write it in different orders unless `hoe` sorts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WRITE = """
import sys, torch
from pathlib import Path
from hoe.io.adapters import LoraWeights, write_adapter
g = torch.Generator().manual_seed(0)
weights = {f"model.layers.{i}.self_attn.{p}_proj": LoraWeights(torch.randn(2, 4, generator=g),
           torch.randn(4, 2, generator=g)) for i in range(6) for p in "qkvo"}
write_adapter(Path(sys.argv[1]), weights, "tiny", record={"format": "hoe-expert/1"}, card="card")
"""


def _write(folder: Path, hash_seed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run([sys.executable, "-c", WRITE, str(folder)], check=True, env=env)
    return (folder / "adapter_config.json").read_bytes()


def test_adapter_config_bytes_do_not_depend_on_the_hash_seed(tmp_path):
    first, second = _write(tmp_path / "a", "1"), _write(tmp_path / "b", "2")
    assert first == second
    assert (tmp_path / "a" / "adapter_model.safetensors").read_bytes() == (
        tmp_path / "b" / "adapter_model.safetensors"
    ).read_bytes()
