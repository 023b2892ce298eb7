"""What a stored evaluation point was made from, so that a resumed ``hoe evaluate`` never mixes models.

Each identity is a short hash of what loading a model reads, not of how or when its files were written:

* LoRA experts (a bundle's, or a tuned model given as a PEFT adapter) by their fingerprints
  (:func:`hoe.bundle.fingerprint.expert_fingerprint`, the values of their factors): the identity a router
  checks its experts by, so rewriting the same expert (another process, another dtype of the same numbers)
  keeps the points and changing it redoes them;
* router experts by the bundle's router entries (each with the fingerprints of the experts it mixes) and the
  content of ``routers.safetensors``;
* full models (the base, a fully tuned model) by the content of their weight and config files
  (:func:`file_content`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from hoe.bundle.fingerprint import exact, expert_fingerprint
from hoe.bundle.folder import MANIFEST, ROUTERS_FILE
from hoe.io.adapters import LoraWeights, read_adapter


def bundle_identity(folder: str | Path, part: str) -> str:
    """The identity of what loading one part of a bundle reads: ``experts`` (the base, objectives and expert
    entries of the manifest, and each expert's fingerprint) or ``routers`` (the router entries and
    ``routers.safetensors``); not the manifest's command, training checkpoints, cards or reports."""
    root = Path(folder)
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))  # validated when the bundle loads
    if part == "experts":
        entries = {k: manifest.get(k) for k in ("base", "objectives", "experts")}
        fingerprints = {  # the exact hash: points are made from these bits (not the router's sketch)
            e["name"]: exact(expert_fingerprint(read_adapter(root / e["path"], "model")))
            for e in manifest["experts"]
        }
        return _short(json.dumps([entries, fingerprints], sort_keys=True).encode())
    routers = [
        {**r, "fingerprint": {e: exact(f) for e, f in r["fingerprint"].items()}} if "fingerprint" in r else r
        for r in manifest.get("routers") or []
    ]
    h = hashlib.sha256(json.dumps({"routers": routers or manifest.get("routers")}, sort_keys=True).encode())
    if (root / ROUTERS_FILE).is_file():
        h.update(file_content(root / ROUTERS_FILE))
    return h.hexdigest()[:16]


def adapter_identity(weights: Mapping[str, LoraWeights]) -> str:
    """The identity of a LoRA adapter read with :func:`hoe.io.adapters.read_adapter`: its fingerprint."""
    return expert_fingerprint(weights)["sha256"][:16]


def model_identity(folder: str | Path) -> str:
    """The identity of a full model folder: the names and content of its ``*.safetensors`` and ``*.json``
    files (hidden ones aside)."""
    root = Path(folder)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in {".safetensors", ".json"} and not p.name.startswith("."):
            h.update(str(p.relative_to(root)).encode())
            h.update(file_content(p))
    return h.hexdigest()[:16]


def file_content(path: Path) -> bytes:
    """What a file holds, for an identity: its bytes, but a safetensors file's header JSON with sorted keys.
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


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]
