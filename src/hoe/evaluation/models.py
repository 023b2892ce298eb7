"""The models an evaluation generates with, found before anything loads and loaded on first use.

* the bundle (:class:`~hoe.model.hoe_model.HoEModel`) for ``hoe``, ``hoe-lora`` and ``soup``;
* its base model θ₀ for ``base``;
* the tuned single-objective models, one per objective, for ``rs``, ``mod`` and ``experts``: by default the
  models the bundle's single-objective experts were extracted from (their records' ``source``), or the
  folders given as ``tuned`` (full checkpoints or PEFT adapters). Each is used as θ(e_i) of
  :mod:`hoe.evaluation.rewarded_soups`, so the expert, ``rs`` and ``mod`` at a vertex are one model.

What a stored result was made from is identified by :mod:`hoe.evaluation.identity`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from hoe.bundle.folder import bundle_base, load_base_model
from hoe.errors import CheckpointError, ConfigError
from hoe.evaluation.rewarded_soups import RewardedSoup, TunedModel, open_tuned
from hoe.io.adapters import read_record
from hoe.io.checkpoint import Checkpoint
from hoe.io.resolve import resolve_model_dir


def tuned_refs(bundle: Path, manifest: dict, overrides: Mapping[str, str]) -> dict[str, str]:
    """objective -> tuned model reference, in the bundle's objective order: ``overrides`` first, else the
    ``source`` recorded by the bundle's single-objective expert of that objective."""
    objectives = manifest["objectives"]
    unknown = sorted(set(overrides) - set(objectives))
    if unknown:
        raise ConfigError(
            f"names unknown objectives {unknown}.",
            field="tuned",
            value=dict(overrides),
            fix=f"Name the bundle's objectives {objectives}, each with the path of its tuned model.",
        )
    refs = {}
    for i, objective in enumerate(objectives):
        if objective in overrides:
            refs[objective] = str(overrides[objective])
            continue
        expert = _vertex_expert(manifest, i)
        record = (read_record(bundle / expert["path"], "model") or {}) if expert else {}
        source = record.get("source")
        if not source:
            raise ConfigError(
                f"the bundle records no tuned model for {objective!r} (its expert has no source).",
                field="tuned",
                value=dict(overrides),
                fix=f"Pass the model tuned for {objective!r} in tuned (a model folder or a PEFT adapter).",
            )
        path = Path(source).expanduser()
        refs[objective] = str(path.resolve()) if path.is_dir() else str(source)
    return refs


def _vertex_expert(manifest: dict, i: int) -> dict | None:
    objective = manifest["objectives"][i]
    for e in manifest["experts"]:
        total = sum(e["anchor"].values())
        if total > 0 and e["anchor"].get(objective, 0.0) / total >= 1 - 1e-9:
            return e
    return None


def open_tuned_models(base_ref: str, refs: Mapping[str, str]) -> RewardedSoup:
    """Open (headers and adapters only) and check every tuned model against the base checkpoint."""
    base = Checkpoint(resolve_model_dir(base_ref, field="model"), field="model")
    tuned: list[TunedModel] = []
    for name, ref in refs.items():
        try:
            tuned.append(open_tuned(name, ref, base))
        except CheckpointError as e:
            raise CheckpointError(
                f"the model tuned for {name!r}: {e.problem}",
                field="tuned",
                value=ref,
                fix=e.fix or f"Pass the model tuned for {name!r} in tuned.",
            ) from None
    return RewardedSoup(base, tuned)


class Models:
    """Lazily loaded models of one evaluation, all on ``device`` in ``dtype``; :meth:`keep` frees the rest."""

    def __init__(
        self,
        bundle: Path,
        manifest: dict,
        soup: RewardedSoup | None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        self.folder, self.manifest, self.soup = bundle, manifest, soup
        self.objectives: list[str] = list(manifest["objectives"])
        self.base_ref = bundle_base(manifest["base"], bundle)
        self.dtype, self.device = dtype, torch.device(device)
        self._loaded: dict[str, object] = {}
        self._working_at: tuple[float, ...] | None = None  # the λ the working model holds

    def bundle(self):
        from hoe.model.hoe_model import HoEModel

        return self._get("bundle", lambda: HoEModel.from_pretrained(self.folder, dtype=self.dtype).eval())

    def base(self) -> torch.nn.Module:
        return self._get("base", lambda: load_base_model(self.base_ref, self.dtype))

    def working(self, lam: Sequence[float]) -> torch.nn.Module:
        """θ(λ) in the one model of the base architecture that ``rs`` and ``experts`` share, rewritten only
        when λ differs from the one it holds (merging once per λ)."""
        model = self._get("working", lambda: load_base_model(self.base_ref, self.dtype))
        lam = tuple(float(x) for x in lam)
        if self._working_at != lam:
            self._working_at = None  # a failed write leaves no claim
            self.merged(model, lam)
            self._working_at = lam
        return model

    def vertex(self, i: int) -> torch.nn.Module:
        """θ(e_i): the model tuned for objective i, in a model of its own (MOD runs several at once)."""
        lam = [float(j == i) for j in range(len(self.objectives))]
        return self._get(f"vertex{i}", lambda: self.merged(load_base_model(self.base_ref, self.dtype), lam))

    def merged(self, model: torch.nn.Module, lam) -> torch.nn.Module:
        if self.soup is None:
            raise RuntimeError("Models.merged: no tuned models were opened")  # a bug, not bad input
        return self.soup.write(model, lam)

    def _get(self, key: str, load):
        if key not in self._loaded:
            self._loaded[key] = load().to(self.device)
        return self._loaded[key]

    def keep(self, kinds: set[str]) -> None:
        """Free every loaded model whose kind (``bundle``, ``base``, ``working``, ``vertex``) is not in
        ``kinds``."""
        for key in list(self._loaded):
            if key.rstrip("0123456789") not in kinds:
                del self._loaded[key]
        if "working" not in self._loaded:
            self._working_at = None
