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
               "probes": [sum_m u_mk^T B_m A_m v_mk for k = 1..8]}

computed in float64, with fixed ±1 probe vectors u_mk, v_mk (row k of the top bits of numpy's PCG64 raw
stream seeded by the module's name and side, ``NAME/u`` or ``NAME/v``: a bit stream numpy keeps stable across
releases, unlike torch's or numpy's normal draws). Each number is invariant to how the factors split a delta; each probe has spread √norm2 over the
draws. :func:`same_expert` accepts equal hashes, or, when the hashes differ, equal module layouts and every
number within :data:`SKETCH_RTOL` (probes relative to √norm2). A float32 re-extraction moves them by ~1e-6;
a random change of relative size ε moves each probe by ~ε√norm2, so ε = 1 % passes all eight with probability
~(1e-2)^8. An expert extracted with a randomised SVD (``svd="auto"`` on matrices 1024 wide or more) differs
by more than that and is refused: train routers on the experts you ship. :func:`check_router` raises
:class:`~hoe.errors.CheckpointError` naming both sides when an expert is not the same.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Mapping

import numpy as np
import torch

from hoe.errors import CheckpointError
from hoe.io.adapters import LoraWeights

SKETCH_RTOL = 1e-4
"""Relative tolerance of :func:`same_expert` on the sketch. Re-extraction on another machine moves the deltas
by ~1e-6 relative (float32 SVD); a different expert moves the sketch by far more than 1e-4."""
SKETCH_PROBES = 8


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
    layout, norm2, probes = hashlib.sha256(), 0.0, np.zeros(SKETCH_PROBES)
    for module in sorted(weights):
        w = weights[module]
        A = w.A.detach().to("cpu", torch.float64).numpy()  # (r, in)
        B = w.B.detach().to("cpu", torch.float64).numpy()  # (out, r)
        layout.update(f"{module}:{w.rank}:{B.shape[0]}x{A.shape[1]};".encode())
        norm2 += float(((B.T @ B) * (A @ A.T)).sum())
        U, V = _signs(module, "u", B.shape[0]), _signs(module, "v", A.shape[1])  # (K, out), (K, in)
        probes += ((U @ B) * (V @ A.T)).sum(-1)  # (K,): u_k^T B A v_k
    return {"modules": layout.hexdigest()[:16], "norm2": norm2, "probes": probes.tolist()}


def _signs(module: str, side: str, n: int) -> np.ndarray:
    """(SKETCH_PROBES, n) fixed ±1 from the top bit of PCG64's raw stream, seeded by module name and side."""
    seed = zlib.crc32(f"{module}/{side}".encode())
    raw = np.random.PCG64(seed).random_raw(SKETCH_PROBES * n).reshape(SKETCH_PROBES, n)
    return np.where(raw >> np.uint64(63), 1.0, -1.0)


def same_expert(stored: Mapping, current: Mapping) -> bool:
    """Whether two fingerprints are of the same expert: equal rank and hash, or (when the hashes differ) equal
    module layouts and sketches within :data:`SKETCH_RTOL` (probes relative to √norm2, since they can be near
    0). A fingerprint without a sketch (written before sketches existed) must match exactly."""
    if stored.get("rank") != current.get("rank"):
        return False
    if stored.get("sha256") == current.get("sha256"):
        return True
    a, b = stored.get("sketch"), current.get("sketch")
    if not isinstance(a, Mapping) or not isinstance(b, Mapping) or a.get("modules") != b.get("modules"):
        return False
    try:
        n_a, n_b = float(a["norm2"]), float(b["norm2"])
        p_a, p_b = np.asarray(a["probes"], dtype=np.float64), np.asarray(b["probes"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return False
    if p_a.shape != (SKETCH_PROBES,) or p_b.shape != p_a.shape:
        return False
    scale = math.sqrt(max(n_a, n_b, 0.0))
    return math.isclose(n_a, n_b, rel_tol=2 * SKETCH_RTOL) and bool(
        (np.abs(p_a - p_b) <= SKETCH_RTOL * scale).all()
    )


def exact(fingerprint: Mapping) -> dict:
    """The bits-only part of a fingerprint, ``{"rank", "sha256"}``: for identities that must not depend on
    float sums (evaluation points, export digests)."""
    return {"rank": fingerprint["rank"], "sha256": fingerprint["sha256"]}


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
