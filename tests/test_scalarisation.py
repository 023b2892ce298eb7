"""Scalarisations and the OMD weights, on numbers worked out by hand."""

import math

import pytest
import torch

from hoe.errors import ConfigError
from hoe.scalarisation import SCALARISATIONS, build_scalarisation
from hoe.scalarisation.tchebycheff import omd_init, omd_update, tchebycheff_utility

D = torch.float64
LAM = torch.tensor([0.5, 0.5], dtype=D)


def test_registry_and_unknown_name():
    assert {"linear", "tchebycheff"} <= set(SCALARISATIONS)
    with pytest.raises(ConfigError, match="^scalarisation: got 'pareto'. Choose one of"):
        build_scalarisation("pareto", LAM)


def test_linear_utility_and_fixed_weights():
    s = build_scalarisation("linear", torch.tensor([0.25, 0.75], dtype=torch.float64))
    r = torch.tensor([[1.0, 2.0], [4.0, 0.0]], dtype=torch.float64)
    assert s.utility(r).tolist() == [1.75, 1.0]  # 0.25 + 1.5; 1 + 0
    w = s.initial_weights()
    assert w.tolist() == [0.25, 0.75] and s.update_weights(w, torch.tensor([9.0, -9.0])).equal(w)


def test_tchebycheff_utility_is_the_worst_weighted_gap():
    lam = torch.tensor([0.2, 0.8, 0.0], dtype=torch.float64)
    z = torch.tensor([1.0, 1.0, 100.0], dtype=torch.float64)
    r = torch.tensor([[0.0, 0.5, 0.0], [1.0, 1.5, -50.0]], dtype=torch.float64)
    # row 0: gaps 0.2·(-1) = -0.2, 0.8·(-0.5) = -0.4 -> -0.4; row 1: 0, 0.4 -> 0 (objective 3 has λ = 0: ignored)
    assert tchebycheff_utility(r, lam, z).tolist() == pytest.approx([-0.4, 0.0])


def test_omd_init_is_inverse_preference():
    assert omd_init(torch.tensor([0.4, 0.6])).tolist() == pytest.approx([0.6, 0.4])
    assert omd_init(torch.tensor([0.5, 0.0, 0.5])).tolist() == [0.5, 0.0, 0.5]  # off the support: 0


def test_one_omd_step_by_hand():
    # the authors' logged setting: λ = (0.5, 0.5), z* = (0.70, 2.20), rewards (0.68, 2.10), α = 240/2000 = 0.12
    w = omd_update(
        LAM.clone(), LAM, torch.tensor([0.70, 2.20], dtype=D), torch.tensor([0.68, 2.10], dtype=D), 0.12
    )
    # log w' = 0.88 log 0.5 + 0.12·3·0.5·(0.02, 0.10) = c + (0.0036, 0.018): w'_2 / w'_1 = e^0.0144
    assert w[1] / w[0] == pytest.approx(math.exp(0.0144), rel=1e-12)
    assert w.sum() == pytest.approx(1.0) and w[1] > w[0]  # the objective further behind gains weight


def test_omd_converges_to_softmax_of_the_drive():
    lam = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    z, rbar = torch.tensor([1.0, 1.0, 1.0]).double(), torch.tensor([0.0, 0.5, 0.9]).double()
    s = build_scalarisation("tchebycheff", lam, z_star=z, alpha=0.12)
    w = s.initial_weights()
    for _ in range(400):  # (1 - α)^400 ≈ 6e-23: the start is forgotten
        w = s.update_weights(w, rbar)
    # the fixed point of log w = (1 - α) log w + α g is log w = g (up to a constant): w = softmax(g)
    assert w.tolist() == pytest.approx(torch.softmax(3 * lam * (z - rbar), 0).tolist(), abs=1e-12)


def test_omd_keeps_zero_weights_off_the_support():
    lam = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
    w = omd_update(omd_init(lam), lam, torch.ones(3).double(), torch.zeros(3).double(), 0.5)
    assert w[1] == 0 and w.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"z_star": [1.0]}, "^target_point: got"),
        ({"z_star": [1.0, float("nan")]}, "^target_point"),
        ({"z_star": [1.0, 1.0], "alpha": 0.0}, "^omd_alpha: got 0.0"),
    ],
)
def test_bad_tchebycheff_options(options, match):
    with pytest.raises(ConfigError, match=match):
        build_scalarisation("tchebycheff", LAM, **options)


def test_a_scalarisation_registered_after_import_is_accepted_by_router_training(monkeypatch):
    from hoe.training.router import RouterConfig

    monkeypatch.setitem(SCALARISATIONS, "mine", SCALARISATIONS["linear"])
    assert RouterConfig(model="b", anchor="0.5,0.5", out="o", scalarisation="mine").scalarisation == "mine"
    with pytest.raises(
        ConfigError,
        match=r"scalarisation: got 'nope'\. Choose one of \['hypervolume', 'improvement', 'linear', 'mine', 'tchebycheff'\]",
    ):
        RouterConfig(model="b", anchor="0.5,0.5", out="o", scalarisation="nope")
    with pytest.raises(ConfigError, match=r"scalarisation: got \['linear'\]"):
        RouterConfig(model="b", anchor="0.5,0.5", out="o", scalarisation=["linear"])


def test_hypervolume_utility_by_hand():
    lam, ref = torch.tensor([0.25, 0.75], dtype=D), torch.tensor([0.0, -0.5], dtype=D)
    s = build_scalarisation("hypervolume", lam, ref_point=ref)
    r = torch.tensor([[0.5, 0.25], [0.1, 1.0]], dtype=D)
    # row 0: ratios (0.5 / 0.25, 0.75 / 0.75) = (2, 1) -> 1² = 1; row 1: (0.4, 2) -> 0.4² = 0.16
    assert s.utility(r).tolist() == pytest.approx([1.0, 0.16])
    # below r on an objective of the support: 0; an objective with λ_i = 0 is not part of the min
    below = torch.tensor([[-0.1, 1.0]], dtype=D)
    assert s.utility(below).tolist() == [0.0]
    edge = build_scalarisation("hypervolume", torch.tensor([1.0, 0.0], dtype=D), ref_point=ref)
    assert edge.utility(torch.tensor([[0.3, -9.0]], dtype=D)).tolist() == pytest.approx([0.09])  # 0.3²


def test_hypervolume_weights_favour_the_smallest_ratio():
    lam, ref = torch.tensor([0.25, 0.75], dtype=D), torch.zeros(2, dtype=D)
    s = build_scalarisation("hypervolume", lam, ref_point=ref, alpha=0.5, step_size=2.0)
    assert s.initial_weights().tolist() == pytest.approx([0.75, 0.25])  # w₀ ∝ 1/λ, as Tchebycheff
    w = s.update_weights(torch.tensor([0.5, 0.5], dtype=D), torch.tensor([0.5, 0.3], dtype=D))
    # ratios (2, 0.4): log w' = 0.5 log 0.5 + 0.5 · 2 · (-2, -0.4) = c + (-2, -0.4) -> w'_2 / w'_1 = e^1.6
    assert float(w[1] / w[0]) == pytest.approx(math.exp(1.6), rel=1e-12) and float(w.sum()) == pytest.approx(
        1
    )


def test_improvement_is_tchebycheff_from_the_lora_only_point():
    lam, base = torch.tensor([0.5, 0.5], dtype=D), torch.tensor([0.6, 0.2], dtype=D)
    s = build_scalarisation("improvement", lam, baseline=base)
    r = torch.tensor([[0.7, 0.3], [0.8, 0.1]], dtype=D)
    # row 0: min(0.5 · 0.1, 0.5 · 0.1) = 0.05; row 1 gives up 0.1 of objective 2: min(0.1, -0.05) = -0.05
    assert s.utility(r).tolist() == pytest.approx([0.05, -0.05])
    w = s.update_weights(s.initial_weights(), torch.tensor([0.8, 0.1], dtype=D))
    assert w[1] > w[0]  # the objective below its LoRA-only value gains weight


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("hypervolume", {"ref_point": [0.0]}, "^reference_point: got"),
        ("hypervolume", {"ref_point": [0.0, float("inf")]}, "^reference_point: got"),
        ("improvement", {"baseline": [0.1, float("nan")]}, "^baseline: got"),
        ("improvement", {"baseline": [0.1, 0.2], "alpha": 2.0}, "^omd_alpha: got 2.0"),
    ],
)
def test_bad_new_scalarisation_options(name, options, match):
    with pytest.raises(ConfigError, match=match):
        build_scalarisation(name, LAM, **options)
