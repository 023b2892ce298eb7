"""Paired reward matrices: sample s of prompt i is seeded s*n + i, whatever the batching."""

from __future__ import annotations

import torch

from hoe.evaluation.paired import mean_se, seeded_rewards
from hoe.generation.text import generate_text, load_tokenizer
from hoe.objectives import ObjectiveContext, build_objectives, score_matrix

from conftest import build_model, save_model
from tiny_lm import char_tokenizer

PROMPTS = ["hi", "tell me", "a story", "why not", "ok"]


def test_seeded_rewards_average_the_seeded_samples_in_any_batching(tmp_path):
    base = save_model(build_model("llama"), tmp_path / "base")
    char_tokenizer().save_pretrained(base)
    model, tokenizer = build_model("llama"), load_tokenizer(str(base))
    objectives = build_objectives(["py:tiny_lm:mean_char_code"], ObjectiveContext(tokenizer=tokenizer))
    got = seeded_rewards(model, tokenizer, PROMPTS, objectives, samples=2, batch=2, max_new_tokens=4)
    n, want = len(PROMPTS), torch.zeros(len(PROMPTS), 1, dtype=torch.float64)
    for s in range(2):  # by hand: one batch of all prompts, seeds s*n + i
        texts = generate_text(model, tokenizer, PROMPTS, None, True, 4, 0.7, [s * n + i for i in range(n)])
        want += score_matrix(objectives, PROMPTS, texts).double() / 2
    assert torch.allclose(got, want)
    assert mean_se(torch.tensor([1.0, 3.0])) == {"mean": 2.0, "se": 1.0}  # std sqrt(2) / sqrt(2)
