"""The router recipe's math on numbers worked out by hand: OMD over several steps, the whole MO-PPO loss on a
2-row batch, the adaptive KL controller, and statistics that add up over micro-batches and processes."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from hoe.errors import HoEWarning
from hoe.scalarisation import build_scalarisation
from hoe.scalarisation.tchebycheff import omd_fixed_point
from hoe.training.ppo import adaptive_kl_coef, masked_whiten, mo_ppo_loss
from hoe.training.router import RouterConfig, scalarisation_options
from hoe.training.router.setup import check_omd_scale

D = torch.float64


def test_omd_over_three_steps_by_hand():
    # λ = (1/4, 3/4), z* = (1, 1), a global batch of 1000 with horizon 2000: α = 0.5, η = 3.
    config = RouterConfig(
        model="b", anchor="0.25,0.75", out="o", batch_size=1000, omd_horizon=2000, minibatches=1
    )
    lam = torch.tensor([0.25, 0.75], dtype=D)
    options = scalarisation_options(config, {"z_star": torch.ones(2, dtype=D)})
    assert options["alpha"] == 0.5 and options["step_size"] == 3.0
    s = build_scalarisation("tchebycheff", lam, **options)
    w = s.initial_weights()
    assert w.tolist() == pytest.approx([0.75, 0.25])  # w₀ ∝ 1/λ = (4, 4/3)
    # Write r = w_1 / w_2. log r ← (1 - α) log r + α η (d_1 - d_2), with the drive d = λ ⊙ (z* - R̄).
    # step 1: R̄ = (0, 1) -> d = (0.25, 0):    r₁ = 3^(1/2) · e^(1.5 · 0.25)        = 3^0.5 e^0.375
    # step 2: R̄ = (1, 0) -> d = (0, 0.75):    r₂ = r₁^(1/2) · e^(-1.5 · 0.75)      = 3^0.25 e^(0.1875 - 1.125)
    # step 3: R̄ = (1, 1) -> d = (0, 0):       r₃ = r₂^(1/2)                        = 3^0.125 e^(-0.46875)
    expected = [3**0.5 * math.exp(0.375), 3**0.25 * math.exp(-0.9375), 3**0.125 * math.exp(-0.46875)]
    for rbar, r in zip([(0.0, 1.0), (1.0, 0.0), (1.0, 1.0)], expected):
        w = s.update_weights(w, torch.tensor(rbar, dtype=D))
        assert w.sum() == pytest.approx(1.0, abs=1e-12)
        assert (w[0] / w[1]).item() == pytest.approx(r, rel=1e-12)
    # step 2 gave objective 2 (3 times the preference, far behind) the weight: r₂ ≈ 0.52 < 1
    assert expected[1] < 1 < expected[0]


def test_omd_settles_at_its_fixed_point_and_small_gaps_keep_it_near_uniform():
    lam = torch.full((3,), 1 / 3, dtype=D)
    z_star, rbar = torch.tensor([0.75, 0.625, 0.652], dtype=D), torch.tensor([0.65, 0.245, 0.442], dtype=D)
    # gaps (0.10, 0.38, 0.21); with η = 3 the drive η λ ⊙ gap is the gap itself: softmax(0.10, 0.38, 0.21)
    e = [math.exp(0.10), math.exp(0.38), math.exp(0.21)]
    fixed = omd_fixed_point(lam, z_star, rbar, 3.0)
    assert fixed.tolist() == pytest.approx([x / sum(e) for x in e], rel=1e-12)  # (0.29, 0.38, 0.32)
    # with η = 30 the furthest objective takes nearly all: softmax(1.0, 3.8, 2.1) ≈ (0.05, 0.81, 0.15)
    assert omd_fixed_point(lam, z_star, rbar, 30.0)[1] > 0.8
    s = build_scalarisation("tchebycheff", lam, z_star=z_star, alpha=0.1, step_size=3.0)
    w = s.initial_weights()
    for _ in range(400):  # the error shrinks by (1 - α) per step in log w
        w = s.update_weights(w, rbar)
    torch.testing.assert_close(w, fixed, rtol=1e-9, atol=1e-12)
    # an objective outside λ's support keeps weight 0
    assert omd_fixed_point(torch.tensor([0.5, 0.5, 0.0], dtype=D), z_star, rbar, 3.0)[2] == 0


def test_linear_scalarisation_ignores_z_star_and_keeps_lambda():
    config = RouterConfig(model="b", anchor="0.25,0.75", out="o", scalarisation="linear")
    assert (
        scalarisation_options(config, {"z_star": None}) == {}
    )  # the linear factory takes none of the OMD options
    s = build_scalarisation("linear", torch.tensor([0.25, 0.75], dtype=D))
    w = s.update_weights(s.initial_weights(), torch.tensor([5.0, -5.0], dtype=D))
    assert w.tolist() == [0.25, 0.75]


MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # row 0: 2 tokens, row 1: 1 token (then padding)


def two_row_batch():
    logp = torch.log(torch.tensor([[1.1, 1.0], [0.5, 1.0]])).requires_grad_()  # old = 0: ratios 1.1, 1, 0.5
    old = torch.zeros(2, 2)
    adv = torch.tensor([[[1.0, 3.0], [-1.0, 1.0]], [[2.0, -2.0], [9.0, 9.0]]])  # (n, T, m); [1, 1] is padding
    values = torch.tensor([[[0.1, 0.5], [0.0, 0.0]], [[-0.3, 0.2], [7.0, 7.0]]]).requires_grad_()
    returns = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [9.0, 9.0]]])
    return logp, old, values, torch.zeros(2, 2, 2), adv, returns, torch.tensor([0.75, 0.25])


def test_the_whole_mo_ppo_loss_on_two_rows_by_hand():
    logp, old, values, old_values, adv, returns, w = two_row_batch()
    loss, stats = mo_ppo_loss(logp, old, values, old_values, adv, returns, w, MASK, 0.2, 0.2, vf_coef=0.1)
    # combined advantage Σ_i w_i A_i: (0.75 + 0.75, -0.75 + 0.25; 1.5 - 0.5) = (1.5, -0.5; 1.0)
    # policy terms max(-Aρ, -A clip(ρ, 0.8, 1.2)): ρ 1.1 -> -1.65; ρ 1 -> 0.5; ρ 0.5, A 1 -> max(-0.5, -0.8) = -0.5
    assert stats["policy_loss"].item() == pytest.approx((-1.65 + 0.5 - 0.5) / 3)
    # value terms max((V - G)², (clip(V, ±0.2) - G)²) per token and objective, V_old = 0:
    # (0.1 | 0): .01, .01 -> .01   (0.5 | 1): .25, .64 -> .64   (0 | 1): 1   (0 | 0): 0
    # (-0.3 | 0): .09, .04 -> .09  (0.2 | 0): .04                 sum 1.78 over 3 tokens × 2 objectives, × ½
    assert stats["value_loss"].item() == pytest.approx(0.5 * 1.78 / 6)
    assert loss.item() == pytest.approx(-1.65 / 3 + 0.1 * 0.5 * 1.78 / 6)
    assert stats["clipped"].item() == 1  # only ρ = 0.5 is outside [0.8, 1.2]
    assert stats["kl2"].item() == pytest.approx(0.5 * (math.log(1.1) ** 2 + math.log(0.5) ** 2), rel=1e-6)
    loss.backward()
    # dL/dlog π = -A ρ / 3 where the unclipped term is the max, 0 on padding
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.5 * 1.1 / 3, 0.5 / 3], [-0.5 / 3, 0.0]]))
    # the clipped value branch won at (0.5 | 1) and is flat there: no gradient; (0 | 1): 0.1 · ½ · 2(V - G) / 6
    assert values.grad[0, 0, 1].item() == 0.0
    assert values.grad[0, 1, 0].item() == pytest.approx(0.1 * 0.5 * 2 * (0 - 1) / 6)
    assert values.grad[1, 1].abs().sum() == 0


def test_loss_parts_with_the_batch_count_add_up_to_the_batch_loss():
    logp, old, values, old_values, adv, returns, w = two_row_batch()
    whole, _ = mo_ppo_loss(logp, old, values, old_values, adv, returns, w, MASK)
    parts = [
        mo_ppo_loss(
            logp[i : i + 1], old[i : i + 1], values[i : i + 1], old_values[i : i + 1], adv[i : i + 1],
            returns[i : i + 1], w, MASK[i : i + 1], count=MASK.sum(),
        )[0]
        for i in range(2)
    ]  # fmt: skip
    assert (parts[0] + parts[1]).item() == pytest.approx(whole.item())


def test_whitening_with_summed_moments_equals_whitening_the_whole_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 2, generator=g)
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    whole = masked_whiten(x, mask)
    # two "processes" holding rows 0-1 and 2-3: reduce sums each moment over both halves
    halves = [(x[:2], mask[:2]), (x[2:], mask[2:])]

    def moments(fn):
        return [fn(xi, mi) for xi, mi in halves]

    sums = {}
    for name, fn in {
        "count": lambda xi, mi: mi.unsqueeze(-1).sum((0, 1)),
        "sum": lambda xi, mi: (xi * mi.unsqueeze(-1)).sum((0, 1)),
    }.items():
        sums[name] = sum(moments(fn))
    mean = sums["sum"] / sums["count"]
    square = sum(moments(lambda xi, mi: (((xi - mean) * mi.unsqueeze(-1)) ** 2).sum((0, 1))))
    calls = iter([sums["count"], sums["sum"], square, sums["count"], sums["sum"], square])
    first = masked_whiten(x[:2], mask[:2], reduce=lambda t: next(calls))
    second = masked_whiten(x[2:], mask[2:], reduce=lambda t: next(calls))
    torch.testing.assert_close(torch.cat([first, second]), whole)


def test_adaptive_kl_controller_by_hand():
    # KL 1.5 vs target 1: error clipped to +0.2; batch 100 / horizon 1000: β · (1 + 0.2 · 0.1) = 0.4 · 1.02
    assert adaptive_kl_coef(0.4, 1.5, 1.0, 100, 1000) == pytest.approx(0.408)
    # KL 0.9: error -0.1 -> 0.4 · (1 - 0.01)
    assert adaptive_kl_coef(0.4, 0.9, 1.0, 100, 1000) == pytest.approx(0.396)
    assert adaptive_kl_coef(0.4, -3.0, 1.0, 100, 1000) == pytest.approx(0.4 * 0.98)  # clipped at -0.2


def test_a_near_uniform_omd_fixed_point_is_recorded_and_warned_about():
    lam = torch.full((3,), 1 / 3, dtype=D)
    z_star = torch.tensor([0.75, 0.625, 0.652], dtype=D)
    start = torch.tensor([0.65, 0.245, 0.442])
    names = ["a", "b", "c"]
    with pytest.warns(HoEWarning, match="close to uniform.*omd_step_size"):
        fixed = check_omd_scale(lam, z_star, start, 3.0, names, warn=True)
    assert fixed["b"] == pytest.approx(0.3847, abs=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_omd_scale(lam, z_star, start, 30.0, names, warn=True)  # max weight 0.81 ≥ 1.5 / 3: no warning
