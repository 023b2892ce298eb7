"""The two baselines HoE is compared with, against their equations on tiny models:

* Rewarded Soups: θ₀ + Σ λ_i τ_i with full task vectors (θ_i − θ₀ for fine-tunes, scaling · B_i A_i for PEFT
  adapters), checked against the weights computed by hand and against PEFT's own merge;
* MOD: the scores each step samples from are Σ λ_i log_softmax(z_i) of the separate models run on the whole
  sequence so far (no KV cache), so the fusion's caches, positions and left padding are right.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from hoe.bundle.folder import load_base_model
from hoe.evaluation.mod import Fusion, mod_sample_ids, mod_scores
from hoe.evaluation.rewarded_soups import RewardedSoup, open_tuned, soup_tensor
from hoe.generation.text import load_tokenizer, prepare_batch, sample_ids
from hoe.io.checkpoint import Checkpoint

from conftest import build_model, make_peft_adapter, save_model
from tiny_lm import char_tokenizer

PROMPTS = ["hi", "tell me a story", "why"]  # different lengths: the batch is left-padded


def perturbed(seed: int, scale: float = 0.05):
    """The tiny Llama with every parameter moved by seeded noise: a 'full fine-tune' of it."""
    model = build_model("llama")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p += scale * torch.randn(p.shape, generator=g)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("rs_mod")
    base = save_model(build_model("llama"), root / "base")
    char_tokenizer().save_pretrained(base)
    full = [save_model(perturbed(s), root / f"full{s}") for s in (1, 2)]
    adapters = [make_peft_adapter(root / f"a{s}", seed=s) for s in (1, 2)]
    return SimpleNamespace(root=root, base=base, full=full, adapters=adapters)


def soup(tiny, folders) -> RewardedSoup:
    ckpt = Checkpoint(tiny.base)
    return RewardedSoup(ckpt, [open_tuned(f"o{i}", f, ckpt) for i, f in enumerate(folders)])


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_soup_tensor_by_hand():
    theta0, t1, t2 = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])
    # θ₀ + 0.25 (θ1 − θ₀) + 0.75 (θ2 − θ₀) = 0.25 θ1 + 0.75 θ2 = (0.75, 3.0)
    assert soup_tensor(theta0, [(0.25, t1), (0.75, t2)]).tolist() == [0.75, 3.0]
    # an adapter adds λ τ to θ₀: (1, -2) + 0.5 (2, 2) = (2, -1)
    assert soup_tensor(theta0, deltas=[(0.5, torch.tensor([2.0, 2.0]))]).tolist() == [2.0, -1.0]
    assert torch.equal(soup_tensor(theta0, [(1.0, t1), (0.0, t2)]), t1)  # the vertex is θ1 itself


def test_rs_is_the_weight_interpolation_of_full_fine_tunes(tiny):
    lam = [0.3, 0.7]
    model = soup(tiny, tiny.full).write(load_base_model(str(tiny.base)), lam)
    theta0, t1, t2 = weights(tiny.base), weights(tiny.full[0]), weights(tiny.full[1])
    by_hand = {k: theta0[k] + lam[0] * (t1[k] - theta0[k]) + lam[1] * (t2[k] - theta0[k]) for k in theta0}
    got = model.state_dict()
    assert set(by_hand) == set(got)
    for k, v in by_hand.items():
        assert torch.allclose(got[k], v, atol=1e-6), k
    reference = build_model("llama")
    reference.load_state_dict(by_hand)
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-5)
    vertex = soup(tiny, tiny.full).write(model, [1.0, 0.0])  # written over the mixture: no trace of it
    assert all(torch.equal(vertex.state_dict()[k], t1[k]) for k in t1)


def test_rs_of_adapters_adds_their_full_deltas_and_matches_peft_at_a_vertex(tiny):
    from peft import PeftModel

    lam = [0.4, 0.6]
    model = soup(tiny, tiny.adapters).write(load_base_model(str(tiny.base)), lam)
    theta0 = weights(tiny.base)
    name = "model.layers.1.self_attn.q_proj"
    ab = [load_file(str(a / "adapter_model.safetensors")) for a in tiny.adapters]
    A = [t[f"base_model.model.{name}.lora_A.weight"] for t in ab]
    B = [t[f"base_model.model.{name}.lora_B.weight"] for t in ab]
    scaling = 2.0  # make_peft_adapter: lora_alpha = 2r
    by_hand = theta0[f"{name}.weight"] + sum(w * scaling * b @ a for w, a, b in zip(lam, A, B))
    got = model.state_dict()[f"{name}.weight"]
    assert torch.allclose(got, by_hand, atol=1e-6)
    averaged_factors = theta0[f"{name}.weight"] + scaling * (0.4 * B[0] + 0.6 * B[1]) @ (
        0.4 * A[0] + 0.6 * A[1]
    )
    assert not torch.allclose(got, averaged_factors, atol=1e-3)  # what RS done wrong would give
    unadapted = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(model.state_dict()[unadapted], theta0[unadapted])
    soup(tiny, tiny.adapters).write(model, [0.0, 1.0])
    peft_merged = PeftModel.from_pretrained(build_model("llama"), str(tiny.adapters[1])).merge_and_unload()
    for k, v in peft_merged.state_dict().items():
        assert torch.allclose(model.state_dict()[k], v, atol=1e-6), k


def test_mod_scores_by_hand():
    z1, z2 = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[2.0, 0.0, 0.0]])
    lp1, lp2 = torch.log_softmax(z1, -1), torch.log_softmax(z2, -1)
    assert torch.allclose(mod_scores([z1, z2], [0.25, 0.75]), 0.25 * lp1 + 0.75 * lp2)
    # softmax of the fused scores is the normalised weighted geometric mean of the two distributions
    p = lp1.exp() ** 0.25 * lp2.exp() ** 0.75
    assert torch.allclose(torch.softmax(mod_scores([z1, z2], [0.25, 0.75]), -1), p / p.sum())


class Recorder:
    """A logits processor that keeps (input_ids, scores) of every step and changes nothing."""

    def __init__(self):
        self.steps: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, input_ids, scores):
        self.steps.append((input_ids.clone(), scores.clone()))
        return scores


def test_mod_samples_from_the_weighted_sum_of_the_models_log_probabilities(tiny):
    tokenizer = load_tokenizer(str(tiny.base))
    models = [perturbed(1, 0.5), perturbed(2, 0.5), perturbed(3, 0.5)]
    lam = [0.2, 0.3, 0.5]
    batch = prepare_batch(models[0], tokenizer, PROMPTS, True, 8, False)
    assert (batch["attention_mask"] == 0).any()  # left padding is exercised
    recorder = Recorder()
    fusion = Fusion(lam[0], list(zip(lam[1:], models[1:])), batch["attention_mask"])
    new = sample_ids(models[0], tokenizer, batch, None, 8, 0.7, [0, 1, 2], [fusion, recorder])
    assert len(recorder.steps) == new.shape[1] > 1
    for ids, scores in recorder.steps:  # each step against the three models run on the whole sequence
        mask = torch.cat([batch["attention_mask"], torch.ones(ids.shape[0], ids.shape[1] - batch["input_ids"].shape[1], dtype=torch.long)], 1)  # fmt: skip
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = [
                m(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1] for m in models
            ]
        want = sum(w * torch.log_softmax(z, -1) for w, z in zip(lam, logits))
        assert torch.allclose(scores, want, atol=1e-4)
    assert torch.equal(new, mod_sample_ids(list(zip(lam, models)), tokenizer, batch, 8, 0.7, [0, 1, 2]))
    # one model with all the weight is that model sampled on its own (no fusion)
    alone = mod_sample_ids([(0.0, models[0]), (1.0, models[1])], tokenizer, batch, 8, 0.7, [0, 1, 2])
    assert torch.equal(alone, sample_ids(models[1], tokenizer, batch, None, 8, 0.7, [0, 1, 2]))
    assert not torch.equal(alone, new)


def test_mod_decodes_greedily_at_temperature_zero(tiny):
    tokenizer = load_tokenizer(str(tiny.base))
    models = [perturbed(1, 0.5), perturbed(2, 0.5)]
    batch = prepare_batch(models[0], tokenizer, PROMPTS, True, 6, False)
    recorder = Recorder()
    new = sample_ids(
        models[0],
        tokenizer,
        batch,
        None,
        6,
        0.0,
        None,
        [Fusion(0.5, [(0.5, models[1])], batch["attention_mask"]), recorder],
    )
    for t, (_, scores) in enumerate(recorder.steps):
        running = ~(new[:, :t] == tokenizer.eos_token_id).any(-1)  # rows still generating at step t
        assert torch.equal(new[running, t], scores[running].argmax(-1))
    alone = [sample_ids(m, tokenizer, batch, None, 6, 0.0, None) for m in models]
    assert not (torch.equal(new, alone[0]) and torch.equal(new, alone[1]))  # the fusion is neither model


def test_rs_refuses_adapters_that_train_more_than_lora_factors(tiny, tmp_path):
    import json
    import shutil

    from hoe.errors import CheckpointError

    for extra in ({"modules_to_save": ["lm_head"]}, {"bias": "lora_only"}):
        folder = tmp_path / next(iter(extra))
        shutil.copytree(tiny.adapters[0], folder)
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**config, **extra}))
        with pytest.raises(CheckpointError, match="trains more than LoRA factors") as e:
            open_tuned("o", folder, Checkpoint(tiny.base))
        assert e.value.field == "tuned"
