"""The single-objective expert recipe (RLOO + KL) on a tiny random Llama: math, LoRA-only updates,
exact resume, artifacts and errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hoe.errors import CheckpointError, ConfigError, OutputExistsError
from hoe.training import ExpertConfig, rl, train_expert
from hoe.training.expert import ExpertRecipe

from tiny_lm import save_tiny_causal_lm

PROMPTS = ["hello there", "tell me a story", "what is up", "good day to you", "how are you", "name a color"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny causal LM folder and a prompt file with a train/eval split."""
    root = tmp_path_factory.mktemp("tiny")
    save_tiny_causal_lm(root / "lm")
    lines = [json.dumps({"prompt": p, "split": "eval" if i == 0 else "train"}) for i, p in enumerate(PROMPTS)]
    (root / "p.jsonl").write_text("\n".join(lines) + "\n")
    return root


def config(tiny, out, **kw) -> ExpertConfig:
    base = dict(
        base=str(tiny / "lm"),
        objective="py:tiny_lm:mean_char_code",
        prompts=str(tiny / "p.jsonl"),
        steps=2,
        batch_prompts=2,
        samples_per_prompt=3,
        max_new_tokens=6,
        lr=1e-2,
        kl_coef=0.1,
        checkpoint_every=1,
    )
    return ExpertConfig(out=str(out), **{**base, **kw})


# ---------------------------------------------------------------- math, by hand


def test_rloo_advantages_by_hand():
    # one prompt, K = 3, r = (1, 2, 6): baselines (2+6)/2 = 4, (1+6)/2 = 3.5, (1+2)/2 = 1.5
    a = rl.rloo_advantages(torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]), 3)
    assert torch.allclose(a, torch.tensor([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0]))


def test_kl_penalised_reward_and_mask():
    r, kl = rl.kl_penalised_reward(torch.tensor([1.0]), torch.tensor([-2.0]), torch.tensor([-3.0]), 0.5)
    assert kl.item() == 1.0 and r.item() == 0.5  # 1 - 0.5 * (-2 - (-3))
    tokens = torch.tensor([[5, 2, 0, 0], [5, 6, 7, 8], [2, 9, 2, 9]])
    assert rl.response_mask(tokens, [2]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_token_logprobs_match_log_softmax():
    logits, tokens = torch.randn(2, 3, 7), torch.randint(0, 7, (2, 3))
    want = (logits / 0.5).log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(rl.token_logprobs(logits, tokens, 0.5), want, atol=1e-6)


def test_policy_gradient_is_advantage_weighted_score_function():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    rl.policy_gradient_loss(logp, torch.tensor([2.0, -1.0]), n_total=4).backward()
    assert logp.grad.tolist() == [-0.5, 0.25]  # dL/dlogp_i = -A_i / N


# ---------------------------------------------------------------- the recipe


def test_two_steps_move_only_lora_parameters(tiny, tmp_path):
    run = ExpertRecipe.setup(config(tiny, tmp_path / "x"))
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    assert run.prompts == PROMPTS[1:]  # the eval prompt is never trained on
    metrics = [run.train_step(s) for s in range(2)]
    assert all(m["kl"] == 0.0 for m in metrics[:1]) and metrics[1]["kl"] != 0.0  # LoRA B starts at 0
    moved = {n for n, p in run.model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all("lora_" in n for n in moved)
    assert any("lora_B" in n for n in moved)


def test_a_bf16_base_trains_float32_lora_weights(tiny, tmp_path):
    run = ExpertRecipe.setup(config(tiny, tmp_path / "x", base_dtype="bfloat16"))
    dtypes = {("lora" if "lora_" in n else "base"): p.dtype for n, p in run.model.named_parameters()}
    assert dtypes == {"lora": torch.float32, "base": torch.bfloat16}
    before = {n: p.detach().clone() for n, p in run.model.named_parameters() if p.requires_grad}
    run.train_step(0)
    run.train_step(1)
    moved = {n for n, p in run.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])}
    assert any("lora_B" in n for n in moved)


def test_micro_batches_of_whole_groups_give_the_same_step(tiny, tmp_path):
    grads = []
    for micro in (6, 3):  # one chunk vs one chunk per prompt group (K = 3)
        run = ExpertRecipe.setup(config(tiny, tmp_path / f"m{micro}", micro_batch=micro))
        run.train_step(0)
        run.train_step(1)
        grads.append({n: p.detach().clone() for n, p in run.trainable.items()})
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


def test_resume_is_exact(tiny, tmp_path):
    straight = train_expert(config(tiny, tmp_path / "straight"), progress=False)
    train_expert(config(tiny, tmp_path / "resumed", steps=1), progress=False)
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["step-000001"]
    resumed = train_expert(config(tiny, tmp_path / "resumed", steps=2, resume=True), progress=False)
    a = load_file(straight / "adapter_model.safetensors")
    b = load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.endswith("lora_B.weight") and a[k].abs().sum() > 0 for k in a)
    record = json.loads((resumed / "hoe_training.json").read_text())
    assert [h["step"] for h in record["history"]] == [1, 2]
    assert record["history"] == json.loads((straight / "hoe_training.json").read_text())["history"]
    assert len(record["commands"]) == 2 and "resumed by" in (resumed / "README.md").read_text()


def test_resuming_a_finished_run_keeps_it_resumable(tiny, tmp_path):
    """A finished run resumed with no step left (a plan rerun whole) changes nothing and keeps its last
    checkpoint, so it can be resumed again, and for more steps."""
    out = train_expert(config(tiny, tmp_path / "o", steps=1), progress=False)
    before = load_file(out / "adapter_model.safetensors")
    for _ in range(2):
        train_expert(config(tiny, tmp_path / "o", steps=1, resume=True), progress=False)
        assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000001"]
        after = load_file(out / "adapter_model.safetensors")
        assert all(torch.equal(before[k], after[k]) for k in before)
    train_expert(config(tiny, tmp_path / "o", steps=2, resume=True), progress=False)
    assert json.loads((out / "hoe_training.json").read_text())["steps_done"] == 2


def test_expert_is_a_standard_peft_adapter(tiny, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from hoe.io.adapters import read_adapter

    out = train_expert(config(tiny, tmp_path / "e", steps=1), progress=False)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "hoe_training.json"} <= {
        p.name for p in out.iterdir()
    }
    assert "mean_char_code" in (out / "README.md").read_text()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny / "lm"), str(out))
    assert model.peft_config["default"].r == 8
    assert set(read_adapter(out)) == {
        f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "k_proj", "v_proj", "o_proj")
    }


# ---------------------------------------------------------------- errors


def test_config_errors_are_reported_together(tiny, tmp_path):
    with pytest.raises(ConfigError) as e:
        config(tiny, tmp_path / "o", steps=0, samples_per_prompt=1, kl_coef=-1, dtype="fp8")
    msg = e.value.cli_message()
    assert "steps: got 0" in str(e.value) and "--steps" not in str(e.value)  # the library words no flags
    assert "--steps: got 0" in msg and "--samples-per-prompt: got 1" in msg and "--kl-coef: got -1" in msg
    assert "--dtype: got 'fp8'" in msg


def test_existing_output_and_incompatible_resume(tiny, tmp_path):
    train_expert(config(tiny, tmp_path / "o", steps=1), progress=False)
    with pytest.raises(OutputExistsError, match="Resume its training, allow overwriting"):
        train_expert(config(tiny, tmp_path / "o", steps=1), progress=False)
    with pytest.raises(CheckpointError, match=r"resume: .*--seed: checkpoint 0, now 1"):
        train_expert(config(tiny, tmp_path / "o", steps=2, seed=1, resume=True), progress=False)
    with pytest.raises(ConfigError, match="device: .*'gpu'"):
        train_expert(config(tiny, tmp_path / "o", steps=2, resume=True, device="gpu"), progress=False)
    train_expert(
        config(tiny, tmp_path / "o", steps=2, resume=True, device="cpu"), progress=False
    )  # resumable


def test_cli_train_expert(tiny, tmp_path):
    from typer.testing import CliRunner

    from hoe.cli import app

    args = ["train-expert", "--out", str(tmp_path / "cli"), "--base", str(tiny / "lm"), "--prompts"]
    args += [str(tiny / "p.jsonl"), "--objective", "brevity", "--steps", "1", "--batch-prompts", "2"]
    args += ["--samples-per-prompt", "2", "--max-new-tokens", "4", "--no-progress", "--dtype", "float16"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = load_file(str(tmp_path / "cli" / "adapter_model.safetensors"))
    assert saved and all(t.dtype == torch.float16 for t in saved.values())
    assert "step 1/1, last 10 steps: score" in result.stderr  # --no-progress logs each checkpoint
    bad = CliRunner().invoke(
        app, ["train-expert", "--out", str(tmp_path / "bad"), *args[3:], "--objective", "nope"]
    )
    assert isinstance(bad.exception, ConfigError) and "unknown objective 'nope'" in str(bad.exception)
    assert not (tmp_path / "bad").exists()  # validated before --out is created
