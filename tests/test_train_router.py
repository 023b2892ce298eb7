"""``hoe train-router`` on a tiny random Llama bundle: what trains, checkpointing, resume, two processes,
the artifact, fingerprints and refused options."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

import pytest
import torch
from safetensors.torch import load_file

from hoe import HoEModel, build
from hoe.errors import CheckpointError, ConfigError
from hoe.model.layer import HoELinear
from hoe.training.router import RouterConfig, RouterRecipe, train_router

from bad_input.helpers import assert_refused, cli, snapshot
from conftest import build_model, make_peft_adapter, save_model
from tiny_lm import char_tokenizer

TESTS = Path(__file__).parent
PROMPTS = ["hello there", "tell me a story", "what is up", "good day to you", "how are you", "name a color"]
OBJECTIVES = ["helpful=py:tiny_lm:upper_share", "harmless=py:tiny_lm:mean_char_code"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Llama base (char tokenizer), a bundle of two PEFT experts with an old router at (0.3, 0.7), a
    second bundle with other experts under the same names, and a prompt file."""
    root = tmp_path_factory.mktemp("router")
    base = save_model(build_model("llama"), root / "base")
    char_tokenizer().save_pretrained(base)
    experts = {
        "helpful": make_peft_adapter(root / "a", seed=1),
        "harmless": make_peft_adapter(root / "b", seed=2),
    }
    bundle = build(str(base), experts, root / "bundle", routers={"old": "0.3,0.7"})
    others = {
        "helpful": make_peft_adapter(root / "c", seed=3),
        "harmless": make_peft_adapter(root / "d", seed=4),
    }
    other = build(str(base), others, root / "other")
    (root / "p.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return SimpleNamespace(root=root, bundle=bundle, other=other, prompts=root / "p.jsonl")


OPTIONS = dict(
    anchor="helpful=0.5,harmless=0.5",
    objective=OBJECTIVES,
    steps=2,
    batch_size=4,
    calibration_prompts=4,
    max_new_tokens=6,
    lr=3e-2,
    value_lr=3e-2,
    ppo_epochs=2,
    minibatches=2,
    micro_batch=2,
    checkpoint_every=1,
)


def config(tiny, out, **kw) -> RouterConfig:
    return RouterConfig(model=str(tiny.bundle), out=str(out), prompts=str(tiny.prompts), **{**OPTIONS, **kw})


def cli_args(tiny, out, **kw) -> list[str]:
    """The CLI spelling of ``config(tiny, out, **kw)``."""
    args = ["train-router", "--model", tiny.bundle, "--out", out, "--prompts", tiny.prompts]
    for key, value in {**OPTIONS, **kw}.items():
        name = key.replace("_", "-")
        if isinstance(value, bool):
            args.append(f"--{name}" if value else f"--no-{name}")
            continue
        for v in value if isinstance(value, list) else [value]:
            args += [f"--{name}", v]
    return [str(a) for a in args] + ["--no-progress"]


def tensors(model: HoEModel) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (the LoRA factors are non-persistent buffers), with each router's slice;
    not the layers' per-call state, rewritten by every call (HoELinear.CALL_STATE; W's rows of ``stacked``
    are the base weights, which are here)."""
    out = {f"p.{n}": p.detach().clone() for n, p in model.named_parameters()}
    out.update(
        {
            f"b.{n}": b.detach().clone()
            for n, b in model.named_buffers()
            if n.rpartition(".")[2] not in HoELinear.CALL_STATE
        }
    )
    for name in [k for k in out if k.endswith(("router_weight", "router_bias"))]:
        for r, part in enumerate(out.pop(name)):
            out[f"{name}[{r}]"] = part
    return out


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


# ---------------------------------------------------------------- what trains


def test_one_step_moves_the_new_router_and_the_value_heads_only(tiny, tmp_path):
    run = RouterRecipe.setup(config(tiny, tmp_path / "x"))
    assert [r.name for r in run.model.routers] == ["old", "router-0.50-0.50"] and run.router == 1
    before, heads = tensors(run.model), {n: p.detach().clone() for n, p in run.value_heads.named_parameters()}
    metrics = run.train_step(0)
    after = tensors(run.model)
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all(n.endswith("[1]") for n in moved), moved  # only the new router's slices
    assert any("router_weight" in n for n in moved) and any("router_bias" in n for n in moved)
    assert all(not torch.equal(p, heads[n]) for n, p in run.value_heads.named_parameters())
    assert metrics["step"] == 1 and {"utility", "kl", "clip_frac", "approx_kl", "w_helpful"} <= set(metrics)


def test_after_a_step_the_rollouts_decode_with_the_stepped_router(tiny, tmp_path):
    """Rollouts decode through the layers' fast path, which copies the routers' weights into its per-call
    buffers: the recipe's optimizer is tracked, so after a step they hold the new weights (the reference
    path, which reads the parameters themselves, gives the same logits)."""
    run = RouterRecipe.setup(config(tiny, tmp_path / "x"))
    ids = torch.randint(4, 90, (2, 6), generator=torch.Generator().manual_seed(0))

    def logits(reference: bool) -> torch.Tensor:
        forward = HoELinear.reference_forward if reference else HoELinear.forward
        with torch.no_grad(), patch.object(HoELinear, "forward", forward):
            return run.model(input_ids=ids, preference=[0.5, 0.5]).logits

    fast = logits(False)  # the buffers now hold the router's first weights
    run.train_step(0)
    stepped = logits(False)
    assert not torch.equal(fast, stepped)
    torch.testing.assert_close(stepped, logits(True), rtol=0, atol=1e-5)


def test_over_a_bf16_bundle_the_router_trains_in_float32(tiny, tmp_path):
    run = RouterRecipe.setup(config(tiny, tmp_path / "x", dtype="bfloat16"))
    layer = next(iter(run.model.layers.values()))
    assert layer.lora_A.dtype == layer.stacked.dtype == torch.bfloat16
    assert {p.dtype for p in run.model.router_parameters()} == {torch.float32}
    before = [p.detach().clone() for p in run.model.router_parameters()]
    metrics = run.train_step(0)
    assert math.isfinite(metrics["utility"])
    assert any(not torch.equal(a, p) for a, p in zip(before, run.model.router_parameters()))


def test_the_reference_is_the_linear_soup_and_the_start_is_calibrated(tiny, tmp_path):
    run = RouterRecipe.setup(config(tiny, tmp_path / "x"))
    assert run.reference["expert_weights"].tolist() == [0.5, 0.5]  # λ_i on each single-objective expert
    cal = run.measured.calibration
    assert cal["z_star_source"] == "data" and set(cal["means"]) == {"initial policy", "helpful", "harmless"}
    for i, name in enumerate(["helpful", "harmless"]):  # z*_j = best expert mean + 0.1 std
        best = max(cal["means"][e][name] for e in ("helpful", "harmless"))
        assert run.measured.z_star[i].item() == pytest.approx(best + 0.1 * cal["std"][name], abs=1e-5)
    torch.testing.assert_close(
        run.value_heads.linear.bias, torch.tensor(list(cal["value_init"].values())), atol=1e-5, rtol=0
    )
    assert run.value_heads.linear.weight.abs().sum() == 0
    assert run.w.tolist() == pytest.approx([0.5, 0.5])  # w₀ ∝ 1/λ
    assert set(cal["omd_fixed_point"]) == {"helpful", "harmless"}  # where OMD would settle at the start
    given = RouterRecipe.setup(
        config(tiny, tmp_path / "y", target_point="helpful=0.9,harmless=0.8", reference="hoe-lora")
    )
    assert (
        given.measured.z_star.tolist() == pytest.approx([0.9, 0.8])
        and given.measured.calibration["z_star_source"] == "given"
    )


def test_gradient_checkpointing_recomputes_and_equals_training_without(tiny, tmp_path):
    results = []
    for checkpointing in (False, True):
        run = RouterRecipe.setup(
            config(tiny, tmp_path / str(checkpointing), gradient_checkpointing=checkpointing)
        )
        layer = next(iter(run.model.layers.values()))
        calls: list[bool] = []
        layer.register_forward_hook(lambda *_, calls=calls: calls.append(torch.is_grad_enabled()))
        run.train_step(0)
        results.append((sum(calls), {n: t.detach().clone() for n, t in run.trainable.items()}))
    (plain_calls, plain), (ckpt_calls, ckpt) = results
    assert ckpt_calls > plain_calls  # the backward pass ran the layer again, inside its routing
    assert all(torch.allclose(plain[n], ckpt[n], atol=1e-6) for n in plain)


# ---------------------------------------------------------------- the run and its artifact


def test_resume_equals_an_uninterrupted_run(tiny, tmp_path):
    straight = train_router(config(tiny, tmp_path / "straight"), progress=False)
    train_router(config(tiny, tmp_path / "resumed", steps=1), progress=False)
    resumed = train_router(config(tiny, tmp_path / "resumed", steps=2, resume=True), progress=False)
    a, b = load_file(straight / "routers.safetensors"), load_file(resumed / "routers.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((p / "hoe_router_training.json").read_text()) for p in (straight, resumed))
    assert [h["step"] for h in rb["history"]] == [1, 2] and untimed(ra["history"]) == untimed(rb["history"])
    assert ra["final_w"] == rb["final_w"] and ra["z_star"] == rb["z_star"]
    assert [json.loads(line)["step"] for line in (resumed / "log.jsonl").read_text().splitlines()] == [1, 2]
    # the card names the command that started the run and the one that resumed it
    assert len(ra["commands"]) == 1 and len(rb["commands"]) == 2
    assert "resumed by" in (resumed / "README.md").read_text()


def test_the_new_bundle_is_the_input_plus_the_router_and_explains_itself(tiny, tmp_path):
    before = snapshot(tiny.bundle)
    out = train_router(config(tiny, tmp_path / "new"), progress=False)
    assert snapshot(tiny.bundle) == before  # the input bundle is never modified
    manifest = json.loads((out / "hoe_bundle.json").read_text())
    new = manifest["routers"][1]
    assert new["name"] == "router-0.50-0.50" and new["anchor"] == {"helpful": 0.5, "harmless": 0.5}
    assert set(new["fingerprint"]) == {"helpful", "harmless"} and new["fingerprint"]["helpful"]["rank"] == 4
    record = json.loads((out / "hoe_router_training.json").read_text())
    assert record["seed"] == 0 and record["steps_done"] == 2 and len(record["history"]) == 2
    assert set(record["z_star"]) == set(record["final_w"]) == {"helpful", "harmless"} and record["command"]
    card = (out / "README.md").read_text()
    assert "## Router expert `router-0.50-0.50`" in card and "target point z*" in card and "OMD" in card
    model = HoEModel.from_pretrained(out)
    old = HoEModel.from_pretrained(tiny.bundle)
    torch.testing.assert_close(model.layers["model.layers.0.self_attn.q_proj"].router_weight[0],
                               old.layers["model.layers.0.self_attn.q_proj"].router_weight[0])  # fmt: skip
    ids = char_tokenizer()(["hi"], return_tensors="pt")["input_ids"]
    assert model.generate(ids, preference="0.5,0.5", max_new_tokens=3, do_sample=False).shape == (
        1,
        ids.shape[1] + 3,
    )


def test_linear_scalarisation_keeps_the_weights_at_lambda(tiny, tmp_path):
    out = train_router(config(tiny, tmp_path / "lin", scalarisation="linear", steps=1), progress=False)
    record = json.loads((out / "hoe_router_training.json").read_text())
    assert record["final_w"] == {"helpful": 0.5, "harmless": 0.5} and record["z_star"] is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(tiny, tmp_path):
    """torchrun, 2 CPU processes (gloo), each generating and training on half of each step's global batch."""
    one = train_router(config(tiny, tmp_path / "one", batch_size=5, minibatches=3), progress=False)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    command = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m", "hoe"]
    done = subprocess.run(
        [*command, *cli_args(tiny, tmp_path / "two", batch_size=5, minibatches=3)],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("bundle with router written to") == 1  # rank 0 speaks and writes
    a, b = load_file(one / "routers.safetensors"), load_file(tmp_path / "two" / "routers.safetensors")
    start = load_file(tiny.bundle / "routers.safetensors")
    assert any(not torch.allclose(a[k][1], torch.ones_like(a[k][1])) for k in a if k.endswith("bias"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert all(torch.equal(a[k][0], start[k][0]) for k in a)  # the old router, untouched
    ra, rb = (json.loads((p / "hoe_router_training.json").read_text()) for p in (one, tmp_path / "two"))
    assert rb["processes"] == 2 and ra["processes"] == 1
    assert ra["final_w"] == pytest.approx(rb["final_w"], abs=1e-6)
    assert [h["utility"] for h in ra["history"]] == pytest.approx(
        [h["utility"] for h in rb["history"]], abs=1e-6
    )


def test_ctrl_c_mid_step_keeps_the_old_bundle_and_resume_finishes(tiny, tmp_path):
    """A real run stopped by SIGINT during step 2 (bad_input/pause_runner.py), over a finished bundle."""
    out = tmp_path / "kept"
    train_router(config(tiny, out, steps=1), progress=False)
    before = snapshot(out)
    env = {**os.environ, "PYTHONPATH": str(TESTS), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    runner = TESTS / "bad_input" / "pause_runner.py"
    args = cli_args(tiny, out, steps=3, seed=1, overwrite=True)
    proc = subprocess.Popen(
        [sys.executable, str(runner), "hoe.training.router.recipe:RouterRecipe.train_step:2", *args],
        stderr=subprocess.PIPE, text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.rstrip().endswith("PAUSED"):
            break
    proc.send_signal(signal.SIGINT)
    err = "".join(lines) + proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "the last checkpoint (step 1) is in" in err and "is unchanged" in err, (
        err
    )
    assert snapshot(out) == before  # the finished bundle is exactly as it was
    finished = train_router(config(tiny, out, steps=3, seed=1, resume=True), progress=False)
    record = json.loads((finished / "hoe_router_training.json").read_text())
    assert [h["step"] for h in record["history"]] == [1, 2, 3] and record["seed"] == 1


# ---------------------------------------------------------------- refused


def test_a_router_moved_next_to_other_experts_is_refused(tiny, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(tiny.other, moved)
    shutil.copy(tiny.bundle / "routers.safetensors", moved / "routers.safetensors")
    manifest = json.loads((moved / "hoe_bundle.json").read_text())
    manifest["routers"] = json.loads((tiny.bundle / "hoe_bundle.json").read_text())["routers"]
    (moved / "hoe_bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as e:
        HoEModel.from_pretrained(moved)
    stored = manifest["routers"][0]["fingerprint"]["helpful"]["sha256"][:8]
    assert e.value.field == "model" and "router 'old'" in str(e.value) and "trained to mix" in str(e.value)
    assert stored in str(e.value) and str(e.value).count("helpful (rank 4, sha256") == 2  # both sides named
    for router in manifest["routers"]:  # a bundle written before fingerprints existed loads as it is
        del router["fingerprint"]
    (moved / "hoe_bundle.json").write_text(json.dumps(manifest))
    assert [r.name for r in HoEModel.from_pretrained(moved).routers] == ["old"]


def test_bad_options_are_refused_together_naming_the_flags(tiny, tmp_path, capsys):
    out = tmp_path / "bad"
    code, err = cli(capsys, *cli_args(tiny, out, steps=0, gamma=2, minibatches=9))
    assert_refused(code, err, "--steps: got 0")
    assert "--gamma: got 2.0" in err and "--minibatches: got 9" in err
    code, err = cli(
        capsys, *cli_args(tiny, out, anchor="nope=1", objective=["helpful=py:tiny_lm:upper_share"])
    )
    assert_refused(code, err, "--anchor")
    assert "--objective: names the objectives ['helpful']" in err
    assert_refused(
        *cli(capsys, *cli_args(tiny, out, anchor="0.3,0.7")), "--anchor: the bundle's router 'old' sits"
    )
    assert_refused(*cli(capsys, *cli_args(tiny, out, target_point="1")), "--target-point")
    assert_refused(*cli(capsys, *cli_args(tiny, tiny.bundle, overwrite=True)), "--out: ")
    assert_refused(
        *cli(capsys, *cli_args(tiny, out, scalarisation="pareto")), "--scalarisation: got 'pareto'"
    )
    assert not out.exists() and not (tmp_path / ".bad.partial").exists()


# ---------------------------------------------------------------- the router objectives of issue 22


def test_hoe_lora_init_starts_at_hoe_without_routers(tiny, tmp_path):
    """With --reference hoe-lora the new router's first mixture is HoE-LoRA's weights at the anchor, (0.2, 0.8)
    here (uniform would be (0.5, 0.5)), so step 0 decodes as HoE without routers."""
    run = RouterRecipe.setup(config(tiny, tmp_path / "x", anchor="0.2,0.8", reference="hoe-lora", steps=1))
    assert run.measured.calibration["init"] == "hoe-lora"
    for layer in run.model.layers.values():
        mix = torch.softmax(layer.router_bias[run.router].detach(), -1)
        assert mix.tolist() == pytest.approx([0.2, 0.8], abs=1e-6)
        assert layer.router_weight[run.router].abs().sum() == 0
    ids = char_tokenizer()(["hello"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        routed = run.model(ids, preference=run.anchor).logits
        lora_only = run.model(ids, expert_weights=torch.tensor([0.2, 0.8])).logits
    torch.testing.assert_close(routed, lora_only, atol=1e-5, rtol=1e-5)
    uniform = RouterRecipe.setup(
        config(tiny, tmp_path / "y", anchor="0.2,0.8", reference="hoe-lora", init="uniform")
    )
    layer = next(iter(uniform.model.layers.values()))
    assert layer.router_bias[uniform.router].tolist() == [1.0, 1.0]


def test_improvement_measures_the_lora_only_baseline_and_hypervolume_takes_r(tiny, tmp_path):
    run = RouterRecipe.setup(config(tiny, tmp_path / "imp", anchor="0.2,0.8", scalarisation="improvement"))
    cal = run.measured.calibration
    assert set(cal["means"]) == {"initial policy", "hoe-lora at the anchor"} and run.measured.z_star is None
    assert run.measured.baseline.tolist() == pytest.approx(list(cal["baseline"].values()), abs=1e-6)
    assert run.scalarisation.z_star.equal(run.measured.baseline)  # Tchebycheff from y⁰
    hv = RouterRecipe.setup(
        config(tiny, tmp_path / "hv", scalarisation="hypervolume", reference_point="helpful=0,harmless=-1")
    )
    assert hv.measured.ref_point.tolist() == [0.0, -1.0] and hv.scalarisation.ref_point.tolist() == [
        0.0,
        -1.0,
    ]
    assert hv.measured.calibration["reference_point"] == {"helpful": 0.0, "harmless": -1.0}
    first = config(tiny, tmp_path / "imp2", anchor="0.2,0.8", scalarisation="improvement", steps=1)
    out = train_router(first, progress=False)
    measured = json.loads((out / "hoe_router_training.json").read_text())["calibration"]["baseline"]
    again = RouterRecipe.setup(RouterConfig(**{**vars(first), "steps": 2, "resume": True}))
    try:  # resuming restores the baseline instead of measuring it again
        assert again.measured.baseline.tolist() == pytest.approx(list(measured.values()), abs=1e-6)
    finally:
        again.dist.close()


def test_hypervolume_needs_a_reference_point_for_other_objectives(tiny, tmp_path):
    with pytest.raises(ConfigError, match="^reference_point: is required"):
        RouterRecipe.setup(config(tiny, tmp_path / "hv", scalarisation="hypervolume"))


def test_anchor_auto_walks_the_placement_and_the_card_says_why(tiny, tmp_path):
    placement = {
        "format": "hoe-router-placement/1",
        "objectives": ["helpful", "harmless"],
        "chosen": [
            {"anchor": [0.3, 0.7], "name": "lattice-30-70", "reason": "taken already by 'old'"},
            {"anchor": [0.75, 0.25], "name": "lattice-75-25", "reason": "pick 2 of 2: the test's reason"},
        ],
    }
    path = tmp_path / "placement.json"
    path.write_text(json.dumps(placement))
    out = train_router(
        config(tiny, tmp_path / "auto", anchor="auto", placement=str(path), steps=1), progress=False
    )
    manifest = json.loads((out / "hoe_bundle.json").read_text())
    new = manifest["routers"][-1]
    assert new["name"] == "lattice-75-25" and new["anchor"] == {"helpful": 0.75, "harmless": 0.25}
    record = json.loads((out / "hoe_router_training.json").read_text())
    assert record["placement"]["reason"] == "pick 2 of 2: the test's reason"
    assert "placed by hoe place-routers" in (out / "README.md").read_text()
    again = config(tiny, tmp_path / "auto2", anchor="auto", placement=str(path), steps=1)
    with pytest.raises(Exception, match="^anchor: every anchor the placement chose"):
        RouterRecipe.setup(RouterConfig(**{**vars(again), "model": str(out)}))
    with pytest.raises(Exception, match="^anchor: got 'auto'.*--placement"):
        config(tiny, tmp_path / "x", anchor="auto")
