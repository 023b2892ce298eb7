"""What a router expert was trained to mix: a fingerprint of its LoRA experts, checked whenever it is loaded.

A router's weights score LoRA experts by position; they mean nothing next to other experts (another
extraction, rank or merge gives other directions under the same names). So the manifest stores with each
router the fingerprint of every expert it mixes,

    {"helpful": {"rank": 8, "sha256": "3f2a..."}, ...}

where ``rank`` is the expert's largest rank over its modules and ``sha256`` hashes its modules in name order
(the name, then the shapes and float32 values of A and B). Float32 makes the hash independent of the dtype the
factors are stored in when they hold the same numbers (a float16 file and its float32 re-save agree).

The hash tells bits apart, but an expert extracted again on another machine can differ in the last bits (its
SVD runs other kernels) or in the signs of matching columns of B and rows of A, and is the same expert: the
router only ever sees ``delta = B A``. So each fingerprint also carries a ``sketch`` of the deltas,

    "sketch": {"modules": "<hash of names, ranks and shapes>", "norm2": sum_m ||B_m A_m||_F^2,
               "probe": sum_m u_m^T B_m A_m v_m}

with fixed probe vectors u_m, v_m (drawn from a generator seeded by the module's name), computed in float64.
Both numbers are invariant to how the factors split a delta. :func:`same_expert` accepts equal hashes, or,
when the hashes differ, equal module layouts and sketches within :data:`SKETCH_RTOL`: another expert (another
task vector, merge or rank) moves them by orders of magnitude more. :func:`check_router` raises
:class:`~hoe.errors.CheckpointError` naming both sides when an expert is not the same.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Mapping

import torch

from hoe.errors import CheckpointError
from hoe.io.adapters import LoraWeights

SKETCH_RTOL = 1e-4
"""Relative tolerance of :func:`same_expert` on the sketch. Re-extraction on another machine moves the deltas
by ~1e-6 relative (float32 SVD); a different expert moves the sketch by far more than 1e-4."""


def expert_fingerprint(weights: Mapping[str, LoraWeights]) -> dict:
    """``{"rank": r, "sha256": hex, "sketch": {...}}`` of one expert's per-module factors."""
    h = hashlib.sha256()
    for module in sorted(weights):
        w = weights[module]
        h.update(module.encode())
        for t in (w.A, w.B):
            t32 = t.detach().to("cpu", torch.float32).contiguous()
            h.update(str(tuple(t32.shape)).encode())
            h.update(t32.numpy().tobytes())
    return {
        "rank": max((w.rank for w in weights.values()), default=0),
        "sha256": h.hexdigest(),
        "sketch": delta_sketch(weights),
    }


def delta_sketch(weights: Mapping[str, LoraWeights]) -> dict:
    """The sketch of an expert's deltas (see the module docstring), in float64.

    ||B A||_F^2 = sum((B^T B) * (A A^T)) and u^T B A v = (B^T u) . (A v): no delta is formed.
    """
    layout, norm2, probe = hashlib.sha256(), 0.0, 0.0
    for module in sorted(weights):
        w = weights[module]
        A = w.A.detach().to("cpu", torch.float64)  # (r, in)
        B = w.B.detach().to("cpu", torch.float64)  # (out, r)
        layout.update(f"{module}:{w.rank}:{B.shape[0]}x{A.shape[1]};".encode())
        norm2 += float(((B.T @ B) * (A @ A.T)).sum())
        g = torch.Generator().manual_seed(zlib.crc32(module.encode()))
        u = torch.randn(B.shape[0], generator=g, dtype=torch.float64)
        v = torch.randn(A.shape[1], generator=g, dtype=torch.float64)
        probe += float((B.T @ u) @ (A @ v))
    return {"modules": layout.hexdigest()[:16], "norm2": norm2, "probe": probe}


def same_expert(stored: Mapping, current: Mapping) -> bool:
    """Whether two fingerprints are of the same expert: equal rank and hash, or (when the hashes differ) equal
    module layouts and sketches within :data:`SKETCH_RTOL` (the probe relative to the delta's norm, since it can
    be near 0). A fingerprint without a sketch (written before sketches existed) must match exactly."""
    if stored.get("rank") != current.get("rank"):
        return False
    if stored.get("sha256") == current.get("sha256"):
        return True
    a, b = stored.get("sketch"), current.get("sketch")
    if not isinstance(a, Mapping) or not isinstance(b, Mapping) or a.get("modules") != b.get("modules"):
        return False
    try:
        n_a, n_b, p_a, p_b = (float(x) for x in (a["norm2"], b["norm2"], a["probe"], b["probe"]))
    except (KeyError, TypeError, ValueError):
        return False
    scale = math.sqrt(max(n_a, n_b, 0.0))
    return math.isclose(n_a, n_b, rel_tol=2 * SKETCH_RTOL) and abs(p_a - p_b) <= SKETCH_RTOL * scale


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
    """Refuse a router whose stored fingerprints are not of the bundle's experts, name by name and in order
    (:func:`same_expert`; ``where``: the bundle or router folder, the value of ``field``)."""
    if list(stored) == list(current) and all(same_expert(stored[e], current[e]) for e in stored):
        return
    raise CheckpointError(
        f"router {router!r} in {where!r} was trained to mix the experts {describe(stored)}, but the bundle's "
        f"experts are {describe(current)}.",
        field=field,
        value=where,
        fix="Use the router with the LoRA experts it was trained with, or train a new router on these experts "
        "(hoe train-router).",
    )
