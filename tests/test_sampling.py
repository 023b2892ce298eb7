"""Per-row seeded sampling: the right distribution, and a row's sample independent of its batch."""

import pytest
import torch

from hoe.errors import ConfigError
from hoe.generation.sampling import RowSampler, inverse_cdf_sample
from hoe.generation.text import generate_text, load_tokenizer

from conftest import build_model, save_model
from tiny_lm import char_tokenizer


def test_inverse_cdf_picks_the_bin_that_holds_u():
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2]]).expand(6, 4)
    u = torch.tensor([0.0, 0.49, 0.5, 0.79, 0.8, 0.999])
    # cumulative mass 0.5 | 0.5 | 0.8 | 1.0: u = 0.5 lands past the empty bin 1, straight in bin 2
    assert inverse_cdf_sample(probs, u).tolist() == [0, 0, 2, 2, 3, 3]


def test_sampler_frequencies_follow_softmax_at_the_temperature():
    p = torch.tensor([0.6, 0.3, 0.1, 0.0])
    scores = torch.log(p).expand(4000, 4)  # 4000 rows, seeds 0..3999: one draw each
    sampler = RowSampler(range(4000), temperature=0.5)
    out = sampler(None, scores.clone())
    picked = out.argmax(-1)
    assert torch.isinf(out).sum(-1).eq(3).all()  # one finite entry per row
    expected = p**2 / (p**2).sum()  # softmax(log p / 0.5) ∝ p²: 0.783, 0.196, 0.022, 0
    freq = torch.bincount(picked, minlength=4).float() / 4000
    se = (expected * (1 - expected) / 4000).sqrt()
    assert ((freq - expected).abs() <= 4 * se + 1e-9).all(), (freq, expected)
    assert freq[3] == 0


def test_the_same_seed_gives_the_same_draw_and_generators_advance():
    scores = torch.zeros(2, 50)  # uniform over 50 tokens
    a, b = RowSampler([7, 7], 1.0), RowSampler([7, 8], 1.0)
    first_a, first_b = a(None, scores).argmax(-1), b(None, scores).argmax(-1)
    assert first_a[0] == first_a[1] == first_b[0]
    draws = [a(None, scores).argmax(-1)[0].item() for _ in range(20)]
    assert len(set(draws)) > 5  # a fresh uniform per step, not the same token again


def test_a_prompts_sample_does_not_depend_on_its_batch(tmp_path):
    base = save_model(build_model("llama"), tmp_path / "base")
    char_tokenizer().save_pretrained(base)
    tokenizer = load_tokenizer(str(base))
    model = build_model("llama")
    prompts = ["hello there", "a", "what is it"]
    together = generate_text(
        model, tokenizer, prompts, None, max_new_tokens=12, temperature=1.0, seed=[3, 4, 5]
    )
    alone = [
        generate_text(model, tokenizer, [p], None, max_new_tokens=12, temperature=1.0, seed=[s])[0]
        for p, s in zip(prompts, [3, 4, 5])
    ]
    assert together == alone
    assert (
        generate_text(model, tokenizer, prompts, None, max_new_tokens=12, temperature=1.0, seed=3) == together
    )
    other = generate_text(
        model, tokenizer, prompts, None, max_new_tokens=12, temperature=1.0, seed=[13, 14, 15]
    )
    assert other != together


@pytest.mark.parametrize("seed", [[1], [1, 2, 3]])
def test_one_seed_per_prompt_is_required(tmp_path, seed):
    base = save_model(build_model("llama"), tmp_path / "base")
    char_tokenizer().save_pretrained(base)
    with pytest.raises(ConfigError, match="seed: .* one per prompt"):
        generate_text(build_model("llama"), load_tokenizer(str(base)), ["a", "b"], None, seed=seed)


def test_zero_temperature_is_refused_and_a_cold_sampler_is_greedy():
    with pytest.raises(ConfigError, match="temperature"):
        RowSampler([0], 0.0)
    scores = torch.tensor([[0.0, 1.0, 0.5]]).expand(50, 3)  # at T = 0.01, p(token 1) = 1 - 2e-22
    assert RowSampler(range(50), 0.01)(None, scores).argmax(-1).eq(1).all()
