"""The models an evaluation generates with, found before anything loads and loaded on first use.

* the bundle (:class:`~hoe.model.hoe_model.HoEModel`) for ``hoe``, ``hoe-lora`` and ``soup``;
* its base model θ₀ for ``base``;
* the tuned single-objective models, one per objective, for ``rs``, ``mod`` and ``experts``: by default the
  models the bundle's single-objective experts were extracted from (their records' ``source``), or the
  folders given as ``tuned`` (full checkpoints or PEFT adapters). Each is used as θ(e_i) of
  :mod:`hoe.evaluation.rewarded_soups`, so the expert, ``rs`` and ``mod`` at a vertex are one model.

:func:`digest` identifies what a stored result was made from, so a resumed evaluation never mixes models.
"""

from __future__ import annotations

import hashlib
import json
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


def digest(folder: str | Path, content: bool = False) -> str:
    """A short id of a model folder: the names, sizes and modification times of its weight and config files,
    or (``content``) their bytes, for small folders such as bundles of LoRA experts."""
    root = Path(folder)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix not in {".safetensors", ".json"} or p.name.startswith("."):
            continue
        h.update(str(p.relative_to(root)).encode())
        if content:
            h.update(file_content(p))
        else:
            stat = p.stat()
            h.update(json.dumps([stat.st_size, stat.st_mtime_ns]).encode())
    return h.hexdigest()[:16]


def bundle_digest(folder: str | Path, part: str) -> str:
    """The content id of what loading one part of a bundle reads: ``experts`` (the base, objectives and
    expert entries of the manifest, and ``experts/``) or ``routers`` (the router entries and
    ``routers.safetensors``); not the manifest's command, training checkpoints or reports beside them."""
    from hoe.bundle.folder import MANIFEST, ROUTERS_FILE

    root = Path(folder)
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))  # validated when the bundle loads
    if part == "experts":
        entries = {k: manifest.get(k) for k in ("base", "objectives", "experts")}
        files = sorted((root / "experts").rglob("*"))
    else:
        entries, files = {"routers": manifest.get("routers")}, [root / ROUTERS_FILE]
    h = hashlib.sha256(json.dumps(entries, sort_keys=True).encode())
    for p in files:
        if p.is_file() and p.suffix in {".safetensors", ".json"}:
            h.update(str(p.relative_to(root)).encode())
            h.update(file_content(p))
    return h.hexdigest()[:16]


def file_content(path: Path) -> bytes:
    """What a file holds, for a digest: its bytes, but a safetensors file's header JSON with sorted keys.
    safetensors writes its metadata map in an order that varies between processes, so the same tensors and
    metadata saved twice can differ in bytes (and rebuilding a bundle would redo its evaluation points)."""
    data = path.read_bytes()
    if path.suffix == ".safetensors" and len(data) >= 8:
        n = int.from_bytes(data[:8], "little")
        try:
            header = json.loads(data[8 : 8 + n])
        except (ValueError, UnicodeDecodeError):
            return data  # not a safetensors file after all: loading it will say so
        return json.dumps(header, sort_keys=True).encode() + data[8 + n :]
    return data
