"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a folder ``<out>/checkpoints/step-000025/`` holding

* ``trainable.safetensors``: the trained (LoRA) parameters by name;
* ``optimizer.safetensors``: the optimizer's per-parameter state tensors, keyed ``"<index>.<name>"``;
* ``state.json``: the step, the optimizer's hyper-parameters and non-tensor state, the run config, the
  reward history, and how randomness is derived (from ``(seed, step)``, so no RNG state is needed).

It is written through :mod:`hoe.io.atomic`, so a checkpoint that exists is complete; older checkpoints are
deleted only after the new one is in place.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hoe.errors import CheckpointError
from hoe.io.atomic import publish, staged_dir

STATE = "state.json"
_STEP = re.compile(r"^step-(\d+)$")


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:06d}"


def save_checkpoint(
    root: Path,
    step: int,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    state: dict,
    keep: int = 1,
) -> Path:
    """Write the checkpoint of ``step`` atomically, then keep only the newest ``keep`` checkpoints."""
    final = checkpoint_dir(root, step)
    with staged_dir(final) as tmp:
        opt_tensors, opt_json = split_optimizer_state(optimizer.state_dict())
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in trainable.items()},
            str(tmp / "trainable.safetensors"),
        )
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / STATE).write_text(json.dumps({**state, "step": step, "optimizer": opt_json}, indent=1) + "\n")
    publish(tmp, final)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def split_optimizer_state(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """``optimizer.state_dict()`` -> (tensors keyed ``"<param index>.<name>"``, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, per_param in sd["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    """Inverse of :func:`split_optimizer_state`."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, _, name = key.partition(".")
        state.setdefault(int(index), {})[name] = value
    for index, values in rest.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": rest["param_groups"]}


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m[1]), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and (p / STATE).is_file()]
    return [p for _, p in sorted(found)]


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Read ``(trainable tensors, optimizer state_dict, state)`` from a checkpoint folder."""
    try:
        state = json.loads((folder / STATE).read_text())
        trainable = load_file(str(folder / "trainable.safetensors"))
        opt = join_optimizer_state(load_file(str(folder / "optimizer.safetensors")), state.pop("optimizer"))
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise CheckpointError(
            f"cannot read the checkpoint {str(folder)!r} ({type(e).__name__}: {e}).",
            field="resume",
            fix="Delete that folder to resume from an older checkpoint, or start again (allow overwriting).",
        ) from None
    return trainable, opt, state
