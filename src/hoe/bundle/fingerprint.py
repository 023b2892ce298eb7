"""What a router expert was trained to mix: a fingerprint of its LoRA experts, checked whenever it is loaded.

A router's weights score LoRA experts by position; they mean nothing next to other experts (another
extraction, rank or merge gives other directions under the same names). So the manifest stores with each
router the fingerprint of every expert it mixes,

    {"helpful": {"rank": 8, "sha256": "3f2a..."}, ...}

where ``rank`` is the expert's largest rank over its modules and ``sha256`` hashes its modules in name order
(the name, then the shapes and float32 values of A and B). Float32 makes the hash independent of the dtype the
factors are stored in when they hold the same numbers (a float16 file and its float32 re-save agree).
:func:`check_router` raises :class:`~hoe.errors.CheckpointError` naming both sides when they differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch

from hoe.errors import CheckpointError
from hoe.io.adapters import LoraWeights


def expert_fingerprint(weights: Mapping[str, LoraWeights]) -> dict:
    """``{"rank": r, "sha256": hex}`` of one expert's per-module factors."""
    h = hashlib.sha256()
    for module in sorted(weights):
        w = weights[module]
        h.update(module.encode())
        for t in (w.A, w.B):
            t32 = t.detach().to("cpu", torch.float32).contiguous()
            h.update(str(tuple(t32.shape)).encode())
            h.update(t32.numpy().tobytes())
    return {"rank": max((w.rank for w in weights.values()), default=0), "sha256": h.hexdigest()}


def describe(fingerprints: Mapping[str, Mapping]) -> str:
    """``helpful (rank 8, sha256 3f2a9c01), harmless (...)`` for an error message."""
    return ", ".join(
        f"{name} (rank {f.get('rank')}, sha256 {str(f.get('sha256'))[:8]})"
        for name, f in fingerprints.items()
    )


def check_router(
    router: str,
    stored: Mapping[str, Mapping],
    current: Mapping[str, Mapping],
    where: str,
    field: str = "model",
) -> None:
    """Refuse a router whose stored fingerprint differs from the bundle's experts (``where``: the bundle or
    router folder, the value of ``field``)."""
    if dict(stored) == dict(current):
        return
    raise CheckpointError(
        f"router {router!r} in {where!r} was trained to mix the experts {describe(stored)}, but the bundle's "
        f"experts are {describe(current)}.",
        field=field,
        value=where,
        fix="Use the router with the LoRA experts it was trained with, or train a new router on these experts "
        "(hoe train-router).",
    )
