"""The trained expert on disk: a PEFT adapter folder, its training record and a card.

``<out>/adapter_config.json`` and ``adapter_model.safetensors`` (what ``PeftModel.from_pretrained`` loads),
``hoe_training.json`` (config, command, versions, per-step curve and its summary) and ``README.md``.
They are written into the run's partial folder, which replaces ``<out>`` only once complete.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from hoe.dtypes import DTYPES
from hoe.provenance import command_line, versions

if TYPE_CHECKING:
    from hoe.training.expert import Run

TRAINING_RECORD = "hoe_training.json"
CURVE_KEYS = ("reward", "score", "kl", "length")


def summarise(history: list[dict], window: int = 10, keys: tuple[str, ...] = CURVE_KEYS) -> dict:
    """Mean of each curve (``keys``) over the first and the last ``window`` steps."""

    def mean(rows: list[dict], key: str) -> float | None:
        return round(sum(r[key] for r in rows) / len(rows), 6) if rows else None

    first, last = history[:window], history[-window:]
    return {
        f"{which}{window}_{k}": mean(rows, k)
        for which, rows in (("first", first), ("last", last))
        for k in keys
    }


def write_expert(run: Run) -> Path:
    """Write the adapter, the record and the card into the run's partial folder (published afterwards)."""
    out = run.folder.work
    run.model.peft_config["default"].base_model_name_or_path = run.config.base
    run.model.save_pretrained(str(out))
    if run.config.dtype != "float32":
        _cast_adapter(out / "adapter_model.safetensors", DTYPES[run.config.dtype])
    record = training_record(run)
    (out / TRAINING_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    (out / "README.md").write_text(card(record))
    return out


def _cast_adapter(path: Path, dtype: torch.dtype) -> None:
    """Rewrite a saved adapter in ``dtype`` (e.g. float16 to halve the committed size)."""
    tensors = {k: v.to(dtype) for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def training_record(run: Run) -> dict:
    return {
        "format": "hoe-training/1",
        "recipe": "rloo-kl-lora",
        "objective": run.objective.name,
        "config": asdict(run.config),
        "steps_done": len(run.history),
        "summary": summarise(run.history),
        "command": command_line(),
        "commands": run.commands,
        "versions": versions(),
        "history": run.history,
    }


def card(record: dict) -> str:
    c, s = record["config"], record["summary"]

    def fmt(key: str) -> str:
        return "n/a" if s.get(key) is None else f"{s[key]:.4f}"

    return (
        f"# `hoe` single-objective expert: {record['objective']}\n\n"
        f"A LoRA adapter (rank {c['lora_rank']}, scaling 1) on `{c['base']}`, trained by RLOO policy gradient with "
        f"a KL penalty (β = {c['kl_coef']}) to maximise `{c['objective']}`. Load it with\n"
        "`PeftModel.from_pretrained(base_model, this_folder)`, or compress it with `hoe extract --tuned NAME=this_folder`.\n\n"
        f"- steps: {record['steps_done']} × {c['batch_prompts']} prompts × {c['samples_per_prompt']} samples, "
        f"max {c['max_new_tokens']} new tokens, temperature {c['temperature']}, lr {c['lr']}, seed {c['seed']}\n"
        f"- prompts: `{c['prompts']}` (split `{c['split']}`)\n"
        f"- objective score, first 10 / last 10 steps: {fmt('first10_score')} -> {fmt('last10_score')}\n"
        f"- reward (score - β·KL): {fmt('first10_reward')} -> {fmt('last10_reward')}; "
        f"KL: {fmt('first10_kl')} -> {fmt('last10_kl')}; response tokens: {fmt('first10_length')} -> "
        f"{fmt('last10_length')}\n"
        f"- made by: {made_by(record)}\n"
        f"- versions: {', '.join(f'{k} {v}' for k, v in record['versions'].items())}\n\n"
        f"The per-step curve is in `{TRAINING_RECORD}` (and `log.jsonl`, one line per step); `checkpoints/` holds "
        "the last training checkpoint "
        "(for `--resume` with more `--steps`; safe to delete).\n"
    )


def made_by(record: dict) -> str:
    """```cmd``` or ```cmd```, resumed by ```cmd2``` (records before ``commands`` existed: ``command``)."""
    first, *resumed = record.get("commands") or [record["command"]]
    return f"`{first}`" + "".join(f", resumed by `{c}`" for c in resumed)
