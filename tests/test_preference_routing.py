"""Preference routing: convex weights over anchors that reproduce λ (property tests, N = 2..6)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hoe.model.preference_routing import PreferenceRouting


def simplex_points(draw, n_obj: int, count: int) -> np.ndarray:
    raw = np.array([[draw(st.floats(0.0, 1.0)) for _ in range(n_obj)] for _ in range(count)]).reshape(
        count, n_obj
    )
    raw = raw + 1e-3
    return raw / raw.sum(1, keepdims=True)


@st.composite
def anchors_and_preference(draw):
    n_obj = draw(st.integers(2, 6))
    extra = simplex_points(draw, n_obj, draw(st.integers(0, 4)))
    anchors = np.vstack([np.eye(n_obj), extra])  # the vertices make the hull the whole simplex
    lam = simplex_points(draw, n_obj, 1)[0]
    return anchors, lam


@settings(max_examples=150, deadline=None)
@given(anchors_and_preference())
def test_weights_are_convex_and_reproduce_lambda(case):
    anchors, lam = case
    w = PreferenceRouting(anchors).weights(lam)
    assert w.shape == (len(anchors),)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(w @ anchors, lam, atol=1e-9)
    assert (w > 0).sum() <= len(lam)  # at most one Delaunay cell: dim + 1 anchors


@settings(max_examples=50, deadline=None)
@given(anchors_and_preference())
def test_an_anchor_gets_a_one_hot_weight(case):
    anchors, _ = case
    routing = PreferenceRouting(anchors)
    for a in anchors:
        w = routing.weights(a)
        assert w.max() == 1.0 and w.sum() == 1.0
        assert np.allclose(anchors[w.argmax()], a)  # duplicated anchors: the first listed one


def test_two_objectives_match_the_authors_piecewise_linear_router():
    # anchors: vertex experts [1,0], [0,1] and a router at t = 0.7 (METHOD.md §2(c), ensemble.ipynb)
    routing = PreferenceRouting(np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.3]]), priority=np.array([0, 0, 1]))
    np.testing.assert_allclose(routing.weights([0.8, 0.2]), [1 / 3, 0.0, 2 / 3], atol=1e-12)
    np.testing.assert_allclose(routing.weights([0.6, 0.4]), [0.0, 1 / 7, 6 / 7], atol=1e-12)


def test_shared_anchor_prefers_the_router_and_lower_dimensional_hulls_work():
    # three objectives but every anchor on the edge helpful-harmless: the hull is a segment
    anchors = np.array([[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0], [0.5, 0.5, 0]], dtype=float)
    routing = PreferenceRouting(anchors, priority=np.array([0, 0, 0, 1]))
    np.testing.assert_allclose(routing.weights([0.5, 0.5, 0]), [0, 0, 0, 1])
    np.testing.assert_allclose(routing.weights([0.75, 0.25, 0]), [0.5, 0, 0, 0.5], atol=1e-12)


def test_outside_the_hull_is_projected_onto_it():
    anchors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # no humor expert at all
    w = PreferenceRouting(anchors).weights([0.2, 0.2, 0.6])
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w, [0.5, 0.5], atol=1e-6)  # the closest point of the edge
