"""An expert's fingerprint (hoe.bundle.fingerprint): the exact hash of its factors, and the sketch of its deltas
that accepts the same expert re-extracted elsewhere (other signs, other last bits) and nothing else."""

from __future__ import annotations

import zlib

import numpy as np
import torch

from hoe.bundle.fingerprint import SKETCH_PROBES, _signs, delta_sketch, expert_fingerprint, same_expert
from hoe.io.adapters import LoraWeights


def expert(seed: int = 0) -> dict[str, LoraWeights]:
    g = torch.Generator().manual_seed(seed)
    return {
        "q": LoraWeights(torch.randn(2, 5, generator=g), torch.randn(4, 2, generator=g)),
        "up": LoraWeights(torch.randn(3, 5, generator=g), torch.randn(7, 3, generator=g)),
    }


def resplit(weights: dict[str, LoraWeights], noise: float = 0.0) -> dict[str, LoraWeights]:
    """The same deltas split otherwise: B M and M^-1 A with M = diag(-1, 1, ...) (an SVD's sign flip), then
    every factor moved by a relative ``noise``."""
    g = torch.Generator().manual_seed(9)
    out = {}
    for name, w in weights.items():
        m = torch.ones(w.rank)
        m[0] = -1.0
        A, B = m[:, None] * w.A, w.B * m[None, :]
        A = A * (1 + noise * torch.randn(A.shape, generator=g))
        B = B * (1 + noise * torch.randn(B.shape, generator=g))
        out[name] = LoraWeights(A, B)
    return out


def test_the_sketch_by_hand():
    """One module, B A = [[1, 2, 0], [0, 0, 3]]: ||B A||_F^2 = 1 + 4 + 9 = 14, and probe k is u_k^T (B A) v_k
    with the module's fixed ±1 rows."""
    A = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    B = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    sketch = delta_sketch({"m": LoraWeights(A, B)})
    assert sketch["norm2"] == 14.0
    U, V = _signs("m", "u", 2), _signs("m", "v", 3)
    assert U.shape == (SKETCH_PROBES, 2) and set(np.unique(U)) <= {-1.0, 1.0}
    delta = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    assert sketch["probes"] == [float(U[k] @ delta @ V[k]) for k in range(SKETCH_PROBES)]
    first = np.random.PCG64(zlib.crc32(b"m/u")).random_raw(1)[0]  # the documented draw
    assert U[0, 0] == (1.0 if first >> np.uint64(63) else -1.0)


def test_the_same_deltas_split_otherwise_are_the_same_expert_and_others_are_not():
    e = expert()
    f = expert_fingerprint(e)
    flipped = expert_fingerprint(resplit(e))
    assert flipped["sha256"] != f["sha256"]  # other bits
    assert abs(flipped["sketch"]["norm2"] - f["sketch"]["norm2"]) < 1e-9 * f["sketch"]["norm2"]
    assert same_expert(f, flipped)
    assert same_expert(f, expert_fingerprint(resplit(e, noise=1e-6)))  # another machine's last bits
    assert not same_expert(f, expert_fingerprint(resplit(e, noise=1e-2)))  # a perturbed expert
    assert not same_expert(f, expert_fingerprint(expert(seed=1)))  # another expert, same shapes


def test_ranks_layouts_and_fingerprints_without_a_sketch_must_match_exactly():
    e = expert()
    f = expert_fingerprint(e)
    assert not same_expert(f, {**f, "rank": 4})
    fewer = expert_fingerprint({"q": e["q"]})
    assert not same_expert({**f, "rank": fewer["rank"]}, fewer)  # another set of modules
    old = {"rank": f["rank"], "sha256": f["sha256"]}  # a fingerprint written before sketches
    assert same_expert(old, f) and same_expert(f, old)
    assert not same_expert(old, expert_fingerprint(resplit(e)))
    assert not same_expert({**f, "sketch": {**f["sketch"], "norm2": "?"}}, expert_fingerprint(resplit(e)))


def test_an_expert_with_one_module_negated_has_the_same_norm_and_is_refused_by_the_probes():
    e = expert()
    flipped = dict(e, q=LoraWeights(e["q"].A, -e["q"].B))
    f, g = expert_fingerprint(e), expert_fingerprint(flipped)
    assert abs(f["sketch"]["norm2"] - g["sketch"]["norm2"]) < 1e-9 * f["sketch"]["norm2"]
    assert not same_expert(f, g)
