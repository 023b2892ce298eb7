"""Multi-objective PPO math (GAE, whitening, clipped losses) on hand-worked numbers."""

import pytest
import torch

from hoe.training.ppo import (
    combined_advantage,
    gae,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    token_rewards,
)

MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # two responses: 3 tokens and 2 tokens


def test_token_rewards_put_scores_on_the_last_token():
    scores = torch.tensor([[1.0, 10.0], [2.0, 20.0]])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])
    r = token_rewards(scores, kl, MASK, kl_coef=0.5)
    assert r.shape == (2, 3, 2)
    expected0 = [[-0.05, -0.05], [-0.1, -0.1], [-0.15 + 1.0, -0.15 + 10.0]]
    expected1 = [[-0.2, -0.2], [-0.25 + 2.0, -0.25 + 20.0], [0.0, 0.0]]  # padding: no KL, no score
    torch.testing.assert_close(r, torch.tensor([expected0, expected1]))


def test_gae_monte_carlo_and_td_limits():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]]).unsqueeze(-1)  # (2, 3, 1); 7 is padding
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 2.0, 9.0]]).unsqueeze(-1)
    adv, ret = gae(rewards, values, MASK, gamma=1.0, lam=1.0)
    # Monte Carlo: A_t = Σ_{s≥t} r_s - V_t; row 0: 6 - .5, 5 - .5, 3 - .5; row 1: 9 - 1, 5 - 2, padding 0
    assert adv[..., 0].tolist() == [[5.5, 4.5, 2.5], [8.0, 3.0, 0.0]]
    assert ret[..., 0].tolist() == [[6.0, 5.0, 3.0], [9.0, 5.0, 0.0]]  # returns = rewards-to-go
    td, _ = gae(rewards, values, MASK, gamma=1.0, lam=0.0)
    # one-step: r_t + V_{t+1} - V_t, with V = 0 after the last token
    assert td[..., 0].tolist() == [[1.0, 2.0, 2.5], [5.0, 3.0, 0.0]]


def test_gae_discounting_by_hand():
    adv, _ = gae(torch.tensor([[[0.0], [1.0]]]), torch.zeros(1, 2, 1), torch.ones(1, 2), gamma=0.9, lam=0.5)
    assert adv[0, :, 0].tolist() == pytest.approx([0.9 * 0.5 * 1.0, 1.0])  # δ = (0, 1); A_0 = γλ A_1


def test_objectives_are_independent_in_gae_and_whitening():
    r = torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(0))
    v = torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(1))
    joint, _ = gae(r, v, MASK)
    alone, _ = gae(r[..., 1:], v[..., 1:], MASK)
    assert torch.allclose(joint[..., 1:], alone)
    white = masked_whiten(joint, MASK)
    real = white[MASK.bool()]  # (5, 2)
    assert torch.allclose(real.mean(0), torch.zeros(2), atol=1e-6)
    assert torch.allclose(real.std(0), torch.ones(2), atol=1e-6)
    assert white[1, 2].abs().sum() == 0


def test_combined_advantage_weights_objectives():
    adv = torch.tensor([[[1.0, -1.0], [2.0, 0.0]]])
    assert combined_advantage(adv, torch.tensor([0.25, 0.75])).tolist() == [[-0.5, 0.5]]


def test_policy_loss_clips_by_hand():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.1, 1.5, 0.5]])).requires_grad_()  # ratios 1.1, 1.5, 0.5
    adv = torch.tensor([[1.0, 1.0, -1.0]])
    loss = ppo_policy_loss(logp, old, adv, torch.ones(1, 3), clip=0.2)
    # token 1: inside the clip, -1.1; token 2: ratio 1.5 clipped to 1.2 for A > 0, -1.2;
    # token 3: A < 0, max(0.5, 0.8) = 0.8 (the pessimistic clipped term). Mean: (-1.1 - 1.2 + 0.8) / 3
    assert loss.item() == pytest.approx(-0.5)
    loss.backward()
    # only the unclipped token has a gradient: d/dlogp (-A ρ) / 3 = -1.1 / 3
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.1 / 3, 0.0, 0.0]]))


def test_value_loss_takes_the_larger_error():
    old = torch.zeros(1, 2, 1)
    values = torch.tensor([[[0.1], [1.0]]])
    returns = torch.tensor([[[0.0], [2.0]]])
    # token 1: unclipped 0.01, clipped (0.1) 0.01 -> 0.01; token 2: unclipped 1, clipped (0.2) 3.24 -> 3.24
    loss = ppo_value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.01 + 3.24) / 2)
