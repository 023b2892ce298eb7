"""Where single-objective task vectors come from (METHOD.md §2(a).1, Eq. 2: τ = θ_tuned − θ_base).

Two sources, one interface:

* :class:`CheckpointTaskVector`: a fully fine-tuned model folder. τ is streamed module by module from the two
  safetensors checkpoints, in fp32, transposed to ``(out, in)`` for GPT-2 ``Conv1D``.
* :class:`AdapterTaskVector`: an existing PEFT LoRA adapter of the base, whose τ is ``B @ A`` already.

``compress`` turns either into per-module LoRA factors with task-SVD.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hoe.conventions import Rank
from hoe.errors import ConfigError, ShapeMismatchError
from hoe.experts.targets import TargetModule, matches
from hoe.experts.task_svd import LowRank, kth_smallest_abs, retruncate, sparsify, task_svd
from hoe.io.adapters import LoraWeights, read_adapter
from hoe.io.checkpoint import Checkpoint

Compressed = dict[str, tuple[LoraWeights, float]]  # module -> (factors, energy kept)


class CheckpointTaskVector:
    """τ of a fully fine-tuned checkpoint against the base, read tensor by tensor."""

    kind = "checkpoint"

    def __init__(self, name: str, base: Checkpoint, tuned: Checkpoint, modules: list[TargetModule]):
        self.name, self.base, self.tuned, self.modules = name, base, tuned, modules
        self._check_architecture()

    def _check_architecture(self) -> None:
        """Same model type and, for every target, the same weight shape as the base: checked before any work."""
        field = self.tuned.field
        b_type, t_type = self.base.config().get("model_type"), self.tuned.config().get("model_type")
        if b_type != t_type:
            raise ShapeMismatchError(
                f"{self.name!r} is a {t_type!r} model but the base model is {b_type!r}.",
                field=field,
                value=str(self.tuned.folder),
                fix="A task vector needs a fine-tune of the same base model.",
            )
        bad = []
        for m in self.modules:
            if m.weight_key not in self.tuned:
                bad.append(f"{m.weight_key} missing")
            elif self.tuned.shape(m.weight_key) != self.base.shape(m.weight_key):
                bad.append(
                    f"{m.weight_key} {self.tuned.shape(m.weight_key)} vs base {self.base.shape(m.weight_key)}"
                )
        if bad:
            more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
            raise ShapeMismatchError(
                f"{self.name!r} ({str(self.tuned.folder)!r}) does not match the base model: "
                f"{'; '.join(bad[:3])}{more}.",
                field=field,
                value=str(self.tuned.folder),
                fix="Pass a fine-tune of the same base model.",
            )

    def deltas(self) -> Iterator[tuple[TargetModule, torch.Tensor]]:
        """Yield (module, τ) with τ of shape (out, in), fp32."""
        for m in self.modules:
            tau = self.tuned.get(m.weight_key) - self.base.get(m.weight_key)
            yield m, (tau.T if m.transposed else tau)

    def compress(self, rank: Rank, sparsity: float, svd: str = "auto", progress: bool = True) -> Compressed:
        """task-SVD of every module, after dropping the ``sparsity`` fraction of smallest |τ| globally."""
        threshold = global_threshold(self, sparsity)
        out: Compressed = {}
        for m, tau in tqdm(
            self.deltas(),
            total=len(self.modules),
            desc=f"task-SVD {self.name}",
            unit="module",
            disable=not progress,
        ):
            if threshold is not None:
                tau = sparsify(tau, threshold)
            lr = task_svd(tau, rank, svd)
            out[m.name] = (LoraWeights(A=lr.A, B=lr.B, transposed=m.transposed), lr.energy)
        return out


class AdapterTaskVector:
    """τ given as an existing PEFT LoRA adapter of the base model.

    ``targets`` (leaf names or module paths, as for checkpoints) keeps only the modules they name; each must
    name at least one of the adapter's modules, since a target the adapter lacks cannot be honoured.
    """

    kind = "peft-adapter"

    def __init__(
        self,
        name: str,
        folder: Path,
        field: str,
        skeleton_modules: dict[str, TargetModule],
        targets: Sequence[str] | None = None,
    ):
        self.name, self.field = name, field
        weights = read_adapter(folder, field=field)
        self.weights = {
            m: w for m, w in weights.items() if not targets or any(matches(t, m) for t in targets)
        }
        self._check_targets(targets, weights, folder)
        self._check_shapes(skeleton_modules, folder)
        self.modules = [skeleton_modules[n] for n in self.weights]

    def _check_targets(
        self, targets: Sequence[str] | None, weights: dict[str, LoraWeights], folder: Path
    ) -> None:
        missing = [t for t in targets or [] if not any(matches(t, m) for m in weights)]
        if missing:
            has = list(dict.fromkeys(m.rsplit(".", 1)[-1] for m in weights))
            raise ConfigError(
                f"adapter {self.name!r} ({str(folder)!r}) has no module {missing}; it adapts {has}.",
                field="targets",
                value=missing,
                fix=f"Pass targets among {has}, or none to keep every module of the adapter.",
            )

    def _check_shapes(self, skeleton_modules: dict[str, TargetModule], folder: Path) -> None:
        """Each module's delta B @ A must have the shape of the base module it adapts: checked before any work."""
        bad = []
        for module, w in self.weights.items():
            m = skeleton_modules.get(module)
            if m is None:
                bad.append(f"{module} is not a linear module of the base model")
            elif (w.B.shape[0], w.A.shape[1]) != (m.out_features, m.in_features):
                bad.append(
                    f"{module}: delta (out, in) = {(w.B.shape[0], w.A.shape[1])} but the base module has "
                    f"{(m.out_features, m.in_features)}"
                )
        if bad:
            more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
            raise ShapeMismatchError(
                f"adapter {self.name!r} ({str(folder)!r}) does not fit the base model: {'; '.join(bad[:3])}{more}.",
                field=self.field,
                value=str(folder),
                fix="Pass an adapter trained on this base model.",
            )

    def min_rank(self) -> tuple[str, int]:
        """(module, rank) of the adapter's lowest-rank module: the most an int rank can keep without sparsity."""
        module = min(self.weights, key=lambda m: self.weights[m].rank)
        return module, self.weights[module].rank

    def deltas(self) -> Iterator[tuple[TargetModule, torch.Tensor]]:
        for m in self.modules:
            yield m, self.weights[m.name].delta()

    def compress(self, rank: Rank, sparsity: float, svd: str = "auto", progress: bool = True) -> Compressed:
        """Pass the adapter through (scaling folded in), or re-truncate it to ``rank``.

        With ``sparsity > 0`` the full delta ``B @ A`` is sparsified and task-SVD'd like a checkpoint's.
        """
        threshold = global_threshold(self, sparsity)
        out: Compressed = {}
        for module, w in tqdm(
            self.weights.items(), desc=f"adapter {self.name}", unit="module", disable=not progress
        ):
            if threshold is not None:
                lr = task_svd(sparsify(w.delta(), threshold), rank, svd)
            elif isinstance(rank, int) and rank >= w.rank:
                lr = LowRank(B=w.B.float(), A=w.A.float(), energy=1.0)
            else:
                lr = retruncate(w.B, w.A, rank)
            out[module] = (LoraWeights(A=lr.A, B=lr.B, transposed=w.transposed), lr.energy)
        return out


def global_threshold(source: CheckpointTaskVector | AdapterTaskVector, sparsity: float) -> float | None:
    """|τ| at the ``sparsity`` quantile over all of a source's modules (None: drop nothing).

    METHOD.md §2(a).1: the smallest-magnitude entries are dropped over the whole task vector, not per matrix.
    """
    n = sum(m.out_features * m.in_features for m in source.modules)
    k = int(n * sparsity)
    if k < 1:
        return None
    return kth_smallest_abs(lambda: (tau for _, tau in source.deltas()), k)
