"""LoRA experts on disk: standard PEFT adapter folders plus a small `hoe` record.

A folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` (what
``peft.PeftModel.from_pretrained(base, folder)`` loads unchanged), ``hoe_expert.json`` (the expert's anchor
preference, how it was made, energy kept per module) and a ``README.md`` card. `hoe` writes ``lora_alpha = r``
(PEFT scaling 1) so ``B @ A`` is the delta itself; on read, any scaling (``alpha / r``, rsLoRA, rank and
alpha patterns) is folded into ``B``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from hoe.errors import CheckpointError
from hoe.io.checkpoint import Checkpoint

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
EXPERT_RECORD = "hoe_expert.json"
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


@dataclass(frozen=True)
class LoraWeights:
    """One module of an adapter: ``delta = B @ A`` (scaling folded in)."""

    A: torch.Tensor  # (r, in)
    B: torch.Tensor  # (out, r)
    transposed: bool = False  # the base module is a GPT-2 Conv1D

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    def delta(self) -> torch.Tensor:
        return self.B.float() @ self.A.float()  # (out, in)


def is_peft_adapter(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def write_adapter(
    folder: Path,
    weights: dict[str, LoraWeights],
    base_model: str,
    record: dict,
    card: str,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write a PEFT LoRA adapter (scaling 1, per-module ranks via ``rank_pattern``) and its `hoe` record."""
    from peft import LoraConfig

    ranks = {name: w.rank for name, w in weights.items()}
    default_rank = max(set(ranks.values()), key=list(ranks.values()).count)  # the most common rank
    pattern = {re.escape(n): r for n, r in ranks.items() if r != default_rank}
    config = LoraConfig(
        r=default_rank,
        lora_alpha=default_rank,
        rank_pattern=pattern,
        alpha_pattern=dict(pattern),
        target_modules=sorted(weights),
        fan_in_fan_out=any(w.transposed for w in weights.values()),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model,
    )
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(folder))
    tensors: dict[str, torch.Tensor] = {}
    for name, w in weights.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = w.A.to(dtype).contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = w.B.to(dtype).contiguous()
    save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (folder / EXPERT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    (folder / "README.md").write_text(card)


def read_adapter(folder: str | Path, field: str = "expert") -> dict[str, LoraWeights]:
    """Read a PEFT LoRA adapter into ``{module: LoraWeights}`` with the PEFT scaling folded into ``B``."""
    folder = Path(folder)
    cfg = read_adapter_config(folder, field)
    ckpt = Checkpoint(folder, field)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key in ckpt:
        m = _KEY.match(key)
        if m is None:
            continue  # e.g. modules_to_save; not part of the low-rank delta
        parts.setdefault(m["module"], {})[m["ab"]] = ckpt.get(key)
    if not parts:
        raise CheckpointError(f"--{field}: {str(folder)!r} holds no lora_A/lora_B tensors.")
    out = {}
    for module, ab in parts.items():
        if set(ab) != {"A", "B"}:
            missing = ({"A", "B"} - set(ab)).pop()
            raise CheckpointError(
                f"--{field}: module {module!r} in {str(folder)!r} has no lora_{missing} tensor."
            )
        r = ab["A"].shape[0]
        out[module] = LoraWeights(
            ab["A"], ab["B"] * _scaling(cfg, module, r), bool(cfg.get("fan_in_fan_out"))
        )
    return out


def read_adapter_config(folder: Path, field: str) -> dict:
    path = folder / ADAPTER_CONFIG
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"--{field}: cannot read {str(path)!r} ({e}).") from None
    if cfg.get("peft_type", "LORA") != "LORA" or cfg.get("use_dora"):
        kind = "DoRA" if cfg.get("use_dora") else cfg.get("peft_type")
        raise CheckpointError(
            f"--{field}: {str(folder)!r} is a {kind} adapter; hoe reads plain LoRA adapters."
        )
    return cfg


def read_record(folder: str | Path) -> dict | None:
    path = Path(folder) / EXPERT_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def _scaling(cfg: dict, module: str, r: int) -> float:
    from peft.utils.other import get_pattern_key

    alpha = cfg.get("lora_alpha", r)
    alpha_pattern = cfg.get("alpha_pattern") or {}
    if alpha_pattern:
        key = get_pattern_key(list(alpha_pattern), module)
        alpha = alpha_pattern.get(key, alpha)
    return alpha / (r**0.5) if cfg.get("use_rslora") else alpha / r
