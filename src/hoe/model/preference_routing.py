"""Level 3 of the hierarchy: parameter-free preference routing (METHOD.md §2(c)).

Every expert (LoRA expert or router expert) has an anchor preference a_k on the simplex. A user's λ is written
as a convex combination of nearby anchors, λ = Σ_k w⁽¹⁾_k a_k with w⁽¹⁾ ≥ 0 and Σ_k w⁽¹⁾_k = 1:

* the anchors' affine hull is found (SVD of the centred points) and everything is expressed in its
  coordinates, so anchors that do not span the whole simplex (only an edge, say) still work;
* in that space the anchors are Delaunay-triangulated (Qhull via scipy; an interval search in 1-D), and λ gets
  the barycentric coordinates of the cell that contains it: exact reproduction of λ, at most dim + 1 non-zero
  weights, one-hot when λ is an anchor (for two objectives this is the authors' piecewise-linear
  ``WeightingRouter``);
* a λ outside the hull is projected: w⁽¹⁾ minimises ‖Σ_k w_k a_k − λ‖ over the simplex (NNLS).

When several experts share an anchor, the router expert is preferred (it was trained for exactly that λ),
then the first one listed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from scipy.optimize import nnls
from scipy.spatial import Delaunay

_TOL = 1e-9


class PreferenceRouting:
    """Barycentric routing weights over a fixed set of anchors.

    ``anchors``: (K, N) array of anchor preferences on the simplex; ``priority``: (K,) larger wins among
    anchors at the same point (routers 1, LoRA experts 0).
    """

    def __init__(self, anchors: np.ndarray | torch.Tensor, priority: np.ndarray | None = None):
        self.anchors = np.asarray(anchors, dtype=np.float64)  # (K, N)
        k = len(self.anchors)
        priority = np.zeros(k) if priority is None else np.asarray(priority)
        self.points, self.owner = _unique_points(
            self.anchors, priority
        )  # (P, N), (P,) anchor index per point
        self.origin = self.points.mean(0)
        centred = self.points - self.origin
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        dim = int((s > _TOL * max(1.0, s.max(initial=0.0))).sum())
        self.basis = vt[:dim]  # (d, N): orthonormal directions of the anchors' affine hull
        self.coords = centred @ self.basis.T  # (P, d)
        self.delaunay = Delaunay(self.coords) if dim >= 2 else None
        self._cached = lru_cache(maxsize=4096)(self._weights)

    def weights(self, lam: torch.Tensor | np.ndarray) -> np.ndarray:
        """w⁽¹⁾ over the K anchors for one λ (N,), as a float64 array summing to 1."""
        return self._cached(tuple(np.asarray(lam, dtype=np.float64).tolist()))

    def batch_weights(self, lam: torch.Tensor) -> torch.Tensor:
        """w⁽¹⁾ for a (B, N) batch of preferences -> (B, K) float64."""
        return torch.from_numpy(np.stack([self.weights(row) for row in lam.tolist()]))

    def _weights(self, lam_tuple: tuple[float, ...]) -> np.ndarray:
        lam = np.asarray(lam_tuple)
        w = np.zeros(len(self.anchors))
        point_w = self._point_weights(lam)
        np.add.at(w, self.owner, point_w)
        return w

    def _point_weights(self, lam: np.ndarray) -> np.ndarray:
        """Convex weights over the unique points."""
        hits = np.flatnonzero(np.abs(self.points - lam).max(1) <= _TOL)
        if hits.size:
            return _one_hot(len(self.points), hits[0])
        x = (lam - self.origin) @ self.basis.T  # (d,)
        off_hull = np.linalg.norm(lam - self.origin - x @ self.basis)
        if off_hull <= _TOL:
            w = self._inside(x)
            if w is not None:
                return w
        return project_onto_hull(self.points, lam)

    def _inside(self, x: np.ndarray) -> np.ndarray | None:
        """Barycentric weights of the hull cell containing x (hull coordinates), or None if outside."""
        n = len(self.points)
        if self.basis.shape[0] == 0:
            return _one_hot(n, 0)
        if self.delaunay is None:  # 1-D: the two neighbouring points on the line
            t = self.coords[:, 0]
            order = np.argsort(t)
            pos = np.searchsorted(t[order], x[0])
            if x[0] < t[order[0]] - _TOL or x[0] > t[order[-1]] + _TOL:
                return None
            pos = int(np.clip(pos, 1, n - 1))
            lo, hi = order[pos - 1], order[pos]
            frac = float(np.clip((x[0] - t[lo]) / (t[hi] - t[lo]), 0.0, 1.0))
            w = np.zeros(n)
            w[lo], w[hi] = 1.0 - frac, frac
            return w
        cell = int(self.delaunay.find_simplex(x, tol=_TOL))
        if cell < 0:
            return None
        transform = self.delaunay.transform[cell]  # (d + 1, d): affine map to barycentric coordinates
        b = transform[:-1] @ (x - transform[-1])
        bary = np.clip(np.append(b, 1.0 - b.sum()), 0.0, None)
        w = np.zeros(n)
        w[self.delaunay.simplices[cell]] = bary / bary.sum()
        w[w < _TOL] = 0.0
        return w / w.sum()


def project_onto_hull(points: np.ndarray, lam: np.ndarray, penalty: float = 1e4) -> np.ndarray:
    """argmin_{w ≥ 0, Σw = 1} ‖pointsᵀ w − λ‖², by NNLS with the sum constraint as a heavily weighted row."""
    a = np.vstack([points.T, penalty * np.ones(len(points))])
    b = np.append(lam, penalty)
    w, _ = nnls(a, b)
    return w / w.sum()


def _unique_points(anchors: np.ndarray, priority: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    points: list[np.ndarray] = []
    owner: list[int] = []
    for k in np.lexsort((np.arange(len(anchors)), -priority)):  # by priority, then listing order
        if not any(np.abs(p - anchors[k]).max() <= _TOL for p in points):
            points.append(anchors[k])
            owner.append(int(k))
    return np.array(points), np.array(owner)


def _one_hot(n: int, i: int) -> np.ndarray:
    w = np.zeros(n)
    w[i] = 1.0
    return w
