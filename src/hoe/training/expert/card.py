"""The trained expert on disk: a PEFT adapter folder, its training record and a card.

``<out>/adapter_config.json`` and ``adapter_model.safetensors`` (what ``PeftModel.from_pretrained`` loads),
``hoe_training.json`` (config, command, versions, per-step curve and its summary) and ``README.md``.
They are written into the run's partial folder, which replaces ``<out>`` only once complete.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hoe.dtypes import DTYPES
from hoe.provenance import command_line, versions
from hoe.training.expert.config import ExpertConfig
from hoe.training.record import made_by, summarise, versions_line, write_record

TRAINING_RECORD = "hoe_training.json"
CURVE_KEYS = ("reward", "score", "kl", "length")


def write_expert(out: Path, model: Any, config: ExpertConfig, record: dict) -> Path:
    """Write the adapter of ``model`` (a ``peft.PeftModel``), the record and the card into ``out`` (the run's
    partial folder, published afterwards)."""
    model.peft_config["default"].base_model_name_or_path = config.base
    model.save_pretrained(str(out))
    if config.dtype != "float32":
        _cast_adapter(out / "adapter_model.safetensors", DTYPES[config.dtype])
    write_record(out / TRAINING_RECORD, record)
    (out / "README.md").write_text(card(record))
    return out


def _cast_adapter(path: Path, dtype: torch.dtype) -> None:
    """Rewrite a saved adapter in ``dtype`` (e.g. float16 to halve the committed size)."""
    tensors = {k: v.to(dtype) for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def training_record(config: ExpertConfig, objective: str, history: list[dict], commands: list[str]) -> dict:
    """``hoe_training.json``: the config, the ``objective``'s name, the commands and the per-step history."""
    return {
        "format": "hoe-training/1",
        "recipe": "rloo-kl-lora",
        "objective": objective,
        "config": asdict(config),
        "steps_done": len(history),
        "summary": summarise(history, CURVE_KEYS),
        "command": command_line(),
        "commands": commands,
        "versions": versions(),
        "history": history,
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
        f"- versions: {versions_line(record)}\n\n"
        f"The per-step curve is in `{TRAINING_RECORD}` (and `log.jsonl`, one line per step); `checkpoints/` holds "
        "the last training checkpoint "
        "(for `--resume` with more `--steps`; safe to delete).\n"
    )
