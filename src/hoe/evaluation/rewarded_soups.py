"""Rewarded Soups done right: the tuned single-objective models themselves, interpolated in weight space.

Rewarded Soups (Ramé et al., 2023) evaluates at a preference λ the model

    θ(λ) = θ₀ + Σ_i λ_i τ_i                                                        (RS; METHOD.md Eq. 2)

with the *full* task vector τ_i of the model tuned for objective i: ``θ_i − θ₀`` for a full fine-tune, and
``scaling · B_i A_i`` per adapted module for a PEFT LoRA adapter (never a mix of averaged A's and B's, which
is a different model). These are the models the bundle's LoRA experts were extracted from (their records'
``source``), not the compressed experts: the linear soup of those is the ``soup`` method (Eq. 3).

θ(λ) is written into a model of the base architecture tensor by tensor, each tensor read from the
safetensors files when it is needed (:class:`hoe.io.checkpoint.Checkpoint`), so merging holds one model plus
a few tensors in memory whatever the number of objectives (a 7B model merges in the memory of one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from hoe.errors import CheckpointError, ShapeMismatchError
from hoe.io.adapters import LoraWeights, is_peft_adapter, read_adapter
from hoe.io.checkpoint import Checkpoint
from hoe.io.resolve import resolve_model_dir


def soup_tensor(
    theta0: torch.Tensor,
    full: Sequence[tuple[float, torch.Tensor]] = (),
    deltas: Sequence[tuple[float, torch.Tensor]] = (),
) -> torch.Tensor:
    """``θ₀ + Σ_i λ_i (θ_i − θ₀) + Σ_j λ_j τ_j`` for one tensor, all of one shape.

    ``full``: ``(λ_i, θ_i)`` of full fine-tunes; ``deltas``: ``(λ_j, τ_j)`` of adapters (τ_j = B_j A_j).
    Computed as ``(1 − Σ_i λ_i) θ₀ + Σ_i λ_i θ_i + Σ_j λ_j τ_j``, skipping λ = 0, so the vertex λ = e_i gives
    the tuned tensor θ_i bit for bit (and ``θ₀ + τ_j`` for an adapter), whatever the other models hold.
    """
    full = [(float(w), t) for w, t in full if w != 0]
    deltas = [(float(w), t) for w, t in deltas if w != 0]
    out = theta0.float() * (1.0 - sum(w for w, _ in full))  # 0 · θ₀ at a full fine-tune's vertex
    for w, t in [*full, *deltas]:
        out = out + w * t.float()  # 1 · θ_i is θ_i exactly
    return out


@dataclass
class TunedModel:
    """A single-objective model: a full fine-tune (``checkpoint``) or a PEFT LoRA adapter (``adapter``)."""

    name: str
    folder: Path
    checkpoint: Checkpoint | None = None
    adapter: dict[str, LoraWeights] | None = None

    @property
    def kind(self) -> str:
        return "peft-adapter" if self.adapter is not None else "checkpoint"


def open_tuned(name: str, ref: str | Path, base: Checkpoint) -> TunedModel:
    """Open the tuned model ``ref`` for objective ``name`` and check it against the base checkpoint: a full
    fine-tune holds every base tensor with its shape; an adapter's modules exist with its deltas' shapes."""
    folder = resolve_model_dir(ref, field="tuned")
    if is_peft_adapter(folder):
        _check_lora_only(name, folder)
        adapter = read_adapter(folder, field="tuned")
        _check_adapter(name, folder, adapter, base)
        return TunedModel(name, folder, adapter=adapter)
    ckpt = Checkpoint(folder, field="tuned")
    bad = [k for k in base if k not in ckpt or ckpt.shape(k) != base.shape(k)]
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ShapeMismatchError(
            f"the {name!r} model {str(folder)!r} lacks or reshapes {bad[:3]}{more} of the base model.",
            field="tuned",
            value=str(ref),
            fix="Pass a fine-tune (or a LoRA adapter) of the bundle's base model.",
        )
    return TunedModel(name, folder, checkpoint=ckpt)


def _check_lora_only(name: str, folder: Path) -> None:
    """Refuse adapters whose task vector is more than its LoRA factors (trained biases, saved modules): their
    θ_i would be silently wrong."""
    config = json.loads((folder / "adapter_config.json").read_text())
    extra = {k: config.get(k) for k in ("modules_to_save", "bias") if config.get(k) not in (None, [], "none")}
    if extra:
        raise CheckpointError(
            f"the {name!r} adapter {str(folder)!r} trains more than LoRA factors ({extra}).",
            field="tuned",
            value=str(folder),
            fix="Merge it into a full checkpoint (PEFT merge_and_unload) and pass that folder.",
        )


def _check_adapter(name: str, folder: Path, adapter: dict[str, LoraWeights], base: Checkpoint) -> None:
    for module, w in adapter.items():
        key = f"{module}.weight"
        shape = (w.B.shape[0], w.A.shape[1])[:: -1 if w.transposed else 1]
        if key not in base or base.shape(key) != shape:
            found = base.shape(key) if key in base else "no such tensor"
            raise ShapeMismatchError(
                f"the {name!r} adapter {str(folder)!r} adapts {module} as {shape}; the base model has {found}.",
                field="tuned",
                value=str(folder),
                fix="Pass an adapter (or a fine-tune) of the bundle's base model.",
            )


class RewardedSoup:
    """Writes θ(λ) (see the module docstring) into models of the base architecture, streaming tensors."""

    def __init__(self, base: Checkpoint, tuned: Sequence[TunedModel]):
        self.base, self.tuned = base, list(tuned)

    def write(self, model: torch.nn.Module, lam: Sequence[float]) -> torch.nn.Module:
        """Set ``model``'s weights to θ(λ), λ (m,) in the order of ``tuned``; return ``model``.

        Every tensor any tuned model changes is rewritten (θ₀ where λ gives it no weight), so what ``model``
        held before, e.g. θ at another λ, leaves no trace.
        """
        lam = [float(x) for x in lam]
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name in self._targets(params):
                p = params[name]
                p.copy_(self._tensor(name, lam, p).to(p.dtype))
        return model

    def _targets(self, params: dict[str, torch.nn.Parameter]) -> list[str]:
        if any(t.checkpoint is not None for t in self.tuned):
            return list(params)
        return sorted({f"{module}.weight" for t in self.tuned for module in t.adapter or {}})

    def _tensor(self, name: str, lam: list[float], p: torch.Tensor) -> torch.Tensor:
        if name not in self.base:
            raise CheckpointError(
                f"parameter {name!r} of the model is not in {str(self.base.folder)!r}.",
                field="model",
                fix="Pass a bundle whose base model folder holds every parameter.",
            )
        full, deltas = [], []
        module = name.removesuffix(".weight")
        for w, t in zip(lam, self.tuned):
            if w == 0:
                continue
            if t.checkpoint is not None:
                full.append((w, t.checkpoint.get(name)))
            elif t.adapter is not None and module in t.adapter and name.endswith(".weight"):
                d = t.adapter[module].delta()  # (out, in)
                deltas.append((w, d.T if t.adapter[module].transposed else d))
        return soup_tensor(self.base.get(name), full, deltas)
