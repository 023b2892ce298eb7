"""HoEModel: parity with PEFT and with explicit weight soups, per-row preferences, routers, save/load, threads."""

from __future__ import annotations

import threading

import pytest
import torch

from hoe import HoEModel, build, extract, merge
from hoe.errors import CheckpointError, PreferenceError, ShapeMismatchError
from hoe.io.adapters import read_adapter

from conftest import build_model, make_peft_adapter, save_model

IDS = torch.randint(0, 128, (3, 9), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def bundle(two_experts, tmp_path):
    """helpful and harmless experts at the vertices + a TIES-merged expert at (0.5, 0.5)."""
    mid = merge(two_experts, "0.5,0.5", rank=6, out=tmp_path / "mid", method="ties", progress=False)
    experts = dict(two_experts) | {"mid": mid}
    return build(str(tmp_path / "base"), experts, tmp_path / "bundle"), experts


def soup_logits(base_dir, parts, ids=IDS, kind="llama"):
    """Logits of the base with Σ_j c_j ΔW_j added explicitly to its weights."""
    model = build_model(kind)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for coeff, adapter in parts:
            for name, w in read_adapter(adapter).items():
                d = coeff * w.delta()
                modules[name].weight += d.T if w.transposed else d
        return model(ids).logits


def logits(model, preference, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids, preference=preference).logits


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_one_hot_preference_equals_peft_with_that_adapter(kind, tmp_path):
    from peft import PeftModel

    save_model(build_model(kind), tmp_path / "base")
    targets = ["q_proj", "v_proj"] if kind == "llama" else ["c_attn", "c_fc"]
    adapters = {}
    for i, name in enumerate(["a", "b"]):
        from peft import LoraConfig, get_peft_model

        m = get_peft_model(build_model(kind), LoraConfig(r=4, lora_alpha=8, target_modules=targets))
        g = torch.Generator().manual_seed(i + 1)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if "lora_" in n:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
        m.save_pretrained(str(tmp_path / name))
        adapters[name] = tmp_path / name
    model = HoEModel.from_pretrained(build(str(tmp_path / "base"), adapters, tmp_path / "bundle"))
    for name, lam in [("a", {"a": 1.0}), ("b", [0.0, 1.0])]:
        with torch.no_grad():
            expected = PeftModel.from_pretrained(build_model(kind), str(adapters[name])).eval()(IDS).logits
        torch.testing.assert_close(logits(model, lam), expected, atol=1e-5, rtol=0)


def test_vertex_anchors_give_the_linear_soup(two_experts, tmp_path):
    model = HoEModel.from_pretrained(build(str(tmp_path / "base"), two_experts, tmp_path / "bundle"))
    expected = soup_logits(tmp_path / "base", [(0.3, two_experts["helpful"]), (0.7, two_experts["harmless"])])
    torch.testing.assert_close(logits(model, {"helpful": 0.3, "harmless": 0.7}), expected, atol=1e-5, rtol=0)
    # a non-normalised preference is divided by its sum
    torch.testing.assert_close(logits(model, [3.0, 7.0]), expected, atol=1e-5, rtol=0)


def test_between_a_vertex_and_a_merged_expert_uses_the_barycentric_pair(bundle, tmp_path):
    folder, experts = bundle
    model = HoEModel.from_pretrained(folder)
    # λ = (0.8, 0.2) = 0.6 · (1, 0) + 0.4 · (0.5, 0.5)
    torch.testing.assert_close(
        model.routing_weights([0.8, 0.2]), torch.tensor([[0.6, 0.0, 0.4]], dtype=torch.float64)
    )
    expected = soup_logits(tmp_path / "base", [(0.6, experts["helpful"]), (0.4, experts["mid"])])
    torch.testing.assert_close(logits(model, [0.8, 0.2]), expected, atol=1e-5, rtol=0)


def test_reached_names_the_experts_and_routers_a_preference_goes_to(bundle):
    """λ = (0.8, 0.2) is 0.6 of the helpful vertex and 0.4 of the midpoint expert; a router at (0.3, 0.7)
    takes all of its own anchor and says which experts it mixes."""
    model = HoEModel.from_pretrained(bundle[0])
    model.add_router("r", [0.3, 0.7], experts=["helpful", "harmless"])
    assert [(r["kind"], r["name"], round(r["weight"], 6)) for r in model.reached([0.8, 0.2])] == [
        ("expert", "helpful", 0.6), ("expert", "mid", 0.4)
    ]  # fmt: skip
    (router,) = model.reached({"helpful": 3, "harmless": 7})
    assert router == {
        "kind": "router", "name": "r", "weight": 1.0, "anchor": {"helpful": 0.3, "harmless": 0.7},
        "mixes": ["helpful", "harmless"],
    }  # fmt: skip


def test_one_preference_per_row_equals_each_row_alone(bundle):
    model = HoEModel.from_pretrained(bundle[0])
    model.add_router("r", [0.3, 0.7])
    _randomise_routers(model)
    prefs = [[1.0, 0.0], [0.3, 0.7], {"harmless": 1.0, "helpful": 3.0}]
    together = logits(model, prefs)
    for i, p in enumerate(prefs):
        torch.testing.assert_close(together[i : i + 1], logits(model, p, IDS[i : i + 1]), atol=1e-5, rtol=0)


def test_untrained_router_is_a_uniform_mixture_and_only_routers_get_gradients(two_experts, tmp_path):
    model = HoEModel.from_pretrained(
        build(str(tmp_path / "base"), two_experts, tmp_path / "bundle", routers={"mid": "0.5,0.5"})
    )
    assert model.routing_weights([0.5, 0.5]).tolist() == [[0.0, 0.0, 1.0]]
    expected = soup_logits(tmp_path / "base", [(0.5, two_experts["helpful"]), (0.5, two_experts["harmless"])])
    torch.testing.assert_close(logits(model, [0.5, 0.5]), expected, atol=1e-5, rtol=0)
    model(input_ids=IDS, preference=[0.6, 0.4]).logits.square().mean().backward()
    trainable = {id(p) for p in model.router_parameters()}
    moved = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert moved and all(id(dict(model.named_parameters())[n]) in trainable for n in moved)
    assert all(not p.requires_grad for n, p in model.named_parameters() if id(p) not in trainable)


def _randomise_routers(model):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.router_parameters():
            p.copy_(torch.randn(p.shape, generator=g))


def test_save_load_round_trip_is_exact(bundle, tmp_path):
    model = HoEModel.from_pretrained(bundle[0])
    model.add_router("r", [0.4, 0.6])
    _randomise_routers(model)
    model.save_pretrained(tmp_path / "saved")
    again = HoEModel.from_pretrained(tmp_path / "saved")
    for p in ([0.4, 0.6], [0.9, 0.1], [0.0, 1.0]):
        assert torch.equal(logits(model, p), logits(again, p))


def test_generate_uses_the_cache_and_threads_do_not_cross_talk(bundle):
    model = HoEModel.from_pretrained(bundle[0])
    model.add_router("r", [0.3, 0.7])
    _randomise_routers(model)
    prompt = IDS[:1, :4]
    prefs = [[1.0, 0.0], [0.0, 1.0], [0.3, 0.7], [0.65, 0.35]]
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    sequential = [model.generate(prompt, preference=p, **kwargs) for p in prefs]
    # the KV-cached generation equals greedy decoding by full forward passes
    ids = prompt
    for _ in range(8):
        ids = torch.cat([ids, logits(model, prefs[2], ids)[:, -1:].argmax(-1)], 1)
    assert torch.equal(sequential[2], ids)
    assert len({tuple(s[0].tolist()) for s in sequential}) > 1  # the preference changes the output
    results: dict[int, torch.Tensor] = {}

    def run(i):
        for _ in range(3):
            results[i] = model.generate(prompt, preference=prefs[i], **kwargs)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prefs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(len(prefs)):
        assert torch.equal(results[i], sequential[i])


@pytest.mark.parametrize(
    ("preference", "match"),
    [
        ([0.5, 0.2, 0.3], "Expected 2 weights"),
        ([-1.0, 2.0], "non-negative"),
        ([float("nan"), 1.0], "finite"),
        ([0.0, 0.0], "positive"),
        ({"funny": 1.0}, "valid names: \\['helpful', 'harmless'\\]"),
        ([[1.0, 0.0]] * 2, "one per row"),
    ],
)
def test_bad_preferences(bundle, preference, match):
    model = HoEModel.from_pretrained(bundle[0])
    with pytest.raises(PreferenceError, match=match):
        model(input_ids=IDS, preference=preference)


def test_bundle_with_the_wrong_base_or_corrupted_file(bundle, tmp_path):
    from transformers import LlamaForCausalLM

    from conftest import tiny_llama_config

    config = tiny_llama_config()
    config.hidden_size, config.intermediate_size = 48, 96
    save_model(LlamaForCausalLM(config), tmp_path / "other")
    with pytest.raises(ShapeMismatchError, match="does not match its experts"):
        HoEModel.from_pretrained(bundle[0], base=str(tmp_path / "other"))
    weights = bundle[0] / "experts" / "mid" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        HoEModel.from_pretrained(bundle[0])


def test_build_from_full_fine_tunes_of_gpt2(tmp_path):
    """The whole path on GPT-2 (Conv1D): extract from checkpoints, merge, build, one-hot = the expert's soup."""
    from hoe.experts.targets import find_target_modules

    from conftest import add_deltas, low_rank

    save_model(build_model("gpt2"), tmp_path / "base")
    tuned = {}
    for i, name in enumerate(["x", "y"]):
        deltas = {
            m.name: low_rank(m.out_features, m.in_features, 2, 10 * i + j)
            for j, m in enumerate(find_target_modules(build_model("gpt2")))
        }
        save_model(add_deltas(build_model("gpt2"), deltas), tmp_path / f"t{name}")
        tuned[name] = tmp_path / f"t{name}"
    experts = extract(str(tmp_path / "base"), tuned, rank=2, out=tmp_path / "e", sparsity=0.0, progress=False)
    model = HoEModel.from_pretrained(build(str(tmp_path / "base"), experts, tmp_path / "bundle"))
    expected = soup_logits(tmp_path / "base", [(0.25, experts["x"]), (0.75, experts["y"])], kind="gpt2")
    torch.testing.assert_close(logits(model, [0.25, 0.75]), expected, atol=1e-5, rtol=0)


def test_make_peft_adapter_helper_is_random(tmp_path):
    a = read_adapter(make_peft_adapter(tmp_path / "a", seed=1))
    b = read_adapter(make_peft_adapter(tmp_path / "b", seed=2))
    assert not torch.equal(next(iter(a.values())).A, next(iter(b.values())).A)


def test_expert_gate_is_a_mixture_per_token(bundle):
    model = HoEModel.from_pretrained(bundle[0])
    model.add_router("r", [0.3, 0.7])
    _randomise_routers(model)
    layer = next(iter(model.layers.values()))
    x = torch.randn(2, 5, layer.in_features)
    # LoRA anchors only: 0.6 helpful + 0.4 mid, the same for every token
    with model.calling(model.routing_context([0.8, 0.2])):
        assert torch.allclose(layer.mixed_gate(x), torch.tensor([0.6, 0.0, 0.4]))
    with model.calling(model.routing_context([0.4, 0.6])):  # between router (0.3, 0.7) and mid: per token
        gate = layer.mixed_gate(x)
    assert gate.shape == (2, 5, 3) and (gate >= 0).all()
    torch.testing.assert_close(gate.sum(-1), torch.ones(2, 5))
    assert not torch.allclose(gate[0, 0], gate[0, 1])  # a trained (here random) router differs by token
