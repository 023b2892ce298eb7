"""LoRA experts on disk: standard PEFT adapter folders plus a small `hoe` record.

A folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` (what
``peft.PeftModel.from_pretrained(base, folder)`` loads unchanged), ``hoe_expert.json`` (the expert's anchor
preference, how it was made, energy kept per module) and a ``README.md`` card. `hoe` writes ``lora_alpha = r``
(PEFT scaling 1) so ``B @ A`` is the delta itself; on read, any scaling (``alpha / r``, rsLoRA, rank and
alpha patterns) is folded into ``B``.
"""

from __future__ import annotations

import json
import math
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
    _sort_target_modules(folder / "adapter_config.json")
    tensors: dict[str, torch.Tensor] = {}
    for name, w in weights.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = w.A.to(dtype).contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = w.B.to(dtype).contiguous()
    save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (folder / EXPERT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    (folder / "README.md").write_text(card)


def _sort_target_modules(path: Path) -> None:
    """PEFT keeps ``target_modules`` as a set and writes it in hash order, which changes from process to
    process; sorted, the same adapter is the same bytes (content digests of bundles stay stable)."""
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_adapter(folder: str | Path, field: str = "expert") -> dict[str, LoraWeights]:
    """Read a PEFT LoRA adapter into ``{module: LoraWeights}`` with the PEFT scaling folded into ``B``.

    Each module's factors are checked for consistency here (A: (r, in), B: (out, r) with the same r), so every
    reader (``extract``, ``merge``, ``build``) refuses a broken adapter before any work instead of passing it
    on or crashing later in a matrix product. ``field`` is the argument the folder came from, named in errors.
    """
    folder = Path(folder)
    cfg = read_adapter_config(folder, field=field)
    parts = _lora_tensors(Checkpoint(folder, field=field))
    if not parts:
        raise CheckpointError(
            f"{str(folder)!r} holds no lora_A/lora_B tensors.",
            field=field,
            fix="Pass a PEFT LoRA adapter folder.",
        )
    out = {}
    for module, ab in parts.items():
        A, B = _checked_factors(module, ab, folder, field)
        _check_config_rank(cfg, module, A.shape[0], folder, field)
        out[module] = LoraWeights(A, B * _scaling(cfg, module, A.shape[0]), bool(cfg.get("fan_in_fan_out")))
    return out


def _lora_tensors(ckpt: Checkpoint) -> dict[str, dict[str, torch.Tensor]]:
    """``{module: {"A": lora_A, "B": lora_B}}`` of every LoRA key (others, e.g. modules_to_save, are skipped)."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key in ckpt:
        m = _KEY.match(key)
        if m is not None:
            parts.setdefault(m["module"], {})[m["ab"]] = ckpt.get(key)
    return parts


def _checked_factors(
    module: str, ab: dict[str, torch.Tensor], folder: Path, field: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` of one module, refused unless both exist, are matrices and share the rank r."""
    missing = sorted({"A", "B"} - set(ab))
    if missing:
        raise CheckpointError(
            f"module {module!r} in {str(folder)!r} has no lora_{missing[0]} tensor.",
            field=field,
            fix="Pass a complete PEFT LoRA adapter.",
        )
    A, B = ab["A"], ab["B"]
    if A.dim() != 2 or B.dim() != 2:
        raise CheckpointError(
            f"module {module!r} in {str(folder)!r} has lora_A {tuple(A.shape)} and lora_B {tuple(B.shape)}; "
            "both must be matrices.",
            field=field,
            fix="Pass a LoRA adapter of linear layers.",
        )
    if A.shape[0] != B.shape[1]:
        raise CheckpointError(
            f"module {module!r} in {str(folder)!r} has lora_A of rank {A.shape[0]} {tuple(A.shape)} but lora_B "
            f"of rank {B.shape[1]} {tuple(B.shape)}; B @ A needs the same rank.",
            field=field,
            fix="The adapter is broken; save or download it again.",
        )
    return A, B


def _check_config_rank(cfg: dict, module: str, r: int, folder: Path, field: str) -> None:
    """The rank ``adapter_config.json`` gives ``module`` (``r`` or ``rank_pattern``) must be the tensors' rank:
    PEFT scales by the configured one, so a mismatch would make `hoe`'s delta differ from what PEFT loads."""
    from peft.utils.other import get_pattern_key

    expected = cfg.get("r")
    pattern = cfg.get("rank_pattern") or {}
    if pattern:
        expected = pattern.get(get_pattern_key(list(pattern), module), expected)
    if isinstance(expected, int) and expected != r:
        raise CheckpointError(
            f"module {module!r} in {str(folder)!r} has rank {r} tensors but {ADAPTER_CONFIG} gives rank {expected}.",
            field=field,
            fix="The adapter is inconsistent; save or download it again.",
        )


def read_adapter_config(folder: Path, field: str = "expert") -> dict:
    """The folder's ``adapter_config.json``, refused unless it is a plain LoRA adapter's."""
    path = folder / ADAPTER_CONFIG
    cfg = _read_json(path, field, "a PEFT adapter folder")
    if cfg.get("peft_type", "LORA") != "LORA" or cfg.get("use_dora"):
        kind = "DoRA" if cfg.get("use_dora") else cfg.get("peft_type")
        raise CheckpointError(
            f"{str(folder)!r} is a {kind} adapter; hoe reads plain LoRA adapters.",
            field=field,
            value=str(folder),
            fix="Pass a LoRA adapter folder.",
        )
    return cfg


def read_record(folder: str | Path, field: str = "expert") -> dict | None:
    """The `hoe` record of an expert folder (None if it has none), checked enough for its readers: a JSON
    object whose ``anchor``, if present, maps objective names to finite numbers >= 0. A garbled record is a
    :class:`CheckpointError` naming the file, not a traceback in whoever reads the anchor."""
    path = Path(folder) / EXPERT_RECORD
    if not path.is_file():
        return None
    record = _read_json(path, field, "an expert made by hoe extract or hoe merge, or delete the file")
    anchor = record.get("anchor")
    if anchor is not None and not _is_anchor(anchor):
        raise CheckpointError(
            f"{str(path)!r} has anchor {anchor!r}; expected a mapping of objective names to numbers >= 0.",
            field=field,
            fix="Fix or delete the file (without a record an expert is the vertex of its own name).",
        )
    return record


def _is_anchor(anchor: object) -> bool:
    """A non-empty ``{name: finite number >= 0}`` mapping."""
    return (
        isinstance(anchor, dict)
        and bool(anchor)
        and all(
            isinstance(k, str)
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
            and 0 <= v < math.inf
            for k, v in anchor.items()
        )
    )


def _read_json(path: Path, field: str, what: str) -> dict:
    """A JSON object from ``path``, or a :class:`CheckpointError` naming the file (unreadable, not JSON, not an
    object)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {str(path)!r} ({e}).", field=field, fix=f"Pass {what}.") from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{str(path)!r} holds a JSON {type(data).__name__}, not an object.",
            field=field,
            fix=f"Pass {what}.",
        )
    return data


def _scaling(cfg: dict, module: str, r: int) -> float:
    from peft.utils.other import get_pattern_key

    alpha = cfg.get("lora_alpha", r)
    alpha_pattern = cfg.get("alpha_pattern") or {}
    if alpha_pattern:
        key = get_pattern_key(list(alpha_pattern), module)
        alpha = alpha_pattern.get(key, alpha)
    return alpha / (r**0.5) if cfg.get("use_rslora") else alpha / r
