"""The HoE layer's fast paths (one λ, merged, a λ per row, routers) against its reference computation, their
op counts per decoded token, compiled decoding, devices, and the call lock."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from unittest.mock import patch

import pytest
import torch
from transformers import CompileConfig

from hoe.experts.targets import find_target_modules
from hoe.io.adapters import LoraWeights
from hoe.model import decode
from hoe.model.hoe_model import ExpertSpec, HoEModel
from hoe.model.layer import HoELinear
from hoe.model.routing_state import RoutingContext
from op_count import ops_per_decode_step

from conftest import build_model

OBJECTIVES = ["a", "b", "c"]
ANCHORS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.5, 0.5, 0.0)]
RANKS = [2, 3, 1, 2]
IDS = torch.randint(0, 128, (3, 7), generator=torch.Generator().manual_seed(0))

ONE = [0.7, 0.3, 0.0]  # on the edge between e0 and the midpoint expert: no router reached
ROWS = [[0.7, 0.3, 0.0], [0.0, 0.4, 0.6], [0.5, 0.0, 0.5]]  # edges: LoRA experts only, a gate per row
ROUTED = [[1 / 3, 1 / 3, 1 / 3], [0.3, 0.45, 0.25], [0.7, 0.3, 0.0]]  # the routers' cells (and one edge)
CASES = {"one": ONE, "rows": ROWS, "routers": ROUTED}


def hoe_model(
    routers: bool = True, dtype: torch.dtype = torch.float32, device: str | None = None
) -> HoEModel:
    """A tiny Llama with 4 random experts of ranks 2, 3, 1, 2 on every projection (the midpoint expert
    leaves the first one alone) and, with ``routers``, two random routers, at the centroid and (¼, ½, ¼)."""
    if device == "meta":
        with torch.device("meta"):
            base = build_model("llama")
    else:
        base = build_model("llama").to(dtype)
    modules = find_target_modules(base)
    g = torch.Generator().manual_seed(1)
    weights = [
        {
            m.name: LoraWeights(
                A=0.3 * torch.randn(r, m.in_features, generator=g),
                B=0.3 * torch.randn(m.out_features, r, generator=g),
            )
            for i, m in enumerate(modules)
            if not (k == 3 and i == 0)
        }
        for k, r in enumerate(RANKS)
    ]
    specs = [ExpertSpec(f"e{k}", a) for k, a in enumerate(ANCHORS)]
    model = HoEModel(base, OBJECTIVES, specs, weights)
    if routers:
        model.add_router("centre", [1 / 3, 1 / 3, 1 / 3])
        model.add_router("side", [0.25, 0.5, 0.25])
        if device != "meta":
            with torch.no_grad():
                for p in model.router_parameters():
                    p.copy_(torch.randn(p.shape, generator=g).to(p))
    return model.eval()


@contextmanager
def reference():
    """Every HoE layer computes op by op from the experts and the routers' parameters."""
    with patch.object(HoELinear, "forward", lambda self, x: self.reference_forward(x)):
        yield


def logits(model: HoEModel, preference) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS, preference=preference).logits.float()


@pytest.fixture(scope="module")
def model() -> HoEModel:
    return hoe_model()


@pytest.mark.parametrize("mode", list(CASES))
def test_each_fast_path_equals_the_reference_in_fp32(model, mode):
    assert model.routing_context(CASES[mode], IDS.shape[0]).mode == mode
    fast = logits(model, CASES[mode])
    with reference():
        slow = logits(model, CASES[mode])
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5)


def test_the_merged_path_equals_the_reference_and_frees_its_copy(model):
    with reference():
        slow = logits(model, ONE)
    model.merge_single_preference()
    try:
        with model.calling(model.routing_context(ONE)):
            assert {layer.mode for layer in model.layers.values()} == {"merged"}
        fast = logits(model, ONE)
    finally:
        model.merge_single_preference(False)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5)
    assert all(layer.merged_weight is None for layer in model.layers.values())


@pytest.mark.parametrize("mode", list(CASES) + ["merged"])
def test_each_fast_path_is_within_rounding_of_the_reference_in_bf16(mode):
    """One layer in bf16: the fast path rounds in other places (g folded into Bᵀ, the gate mixed in one
    baddbmm, softmax in bf16), so it may differ by a few rounding steps of the output's magnitude."""
    model = hoe_model(dtype=torch.bfloat16)
    model.merge_single_preference(mode == "merged")
    layer = model.layers["model.layers.1.mlp.down_proj"]
    x = torch.randn(3, 5, layer.in_features, generator=torch.Generator().manual_seed(2)).bfloat16()
    with torch.no_grad(), model.calling(model.routing_context(CASES.get(mode, ONE), 3)):
        assert layer.mode == mode
        fast, slow = layer(x).float(), layer.reference_forward(x).float()
    step = 2.0**-8 * slow.abs().max()  # bf16 has 8 significant bits
    assert (fast - slow).abs().max() <= 4 * step
    assert fast.dtype == slow.dtype


def test_a_layer_fused_with_the_base_weight_keeps_one_copy_of_it(model):
    layer = model.layers["model.layers.0.self_attn.q_proj"]
    assert layer.fused and layer.base_layer.weight.data_ptr() == layer.stacked.data_ptr()
    moved = hoe_model(routers=False).to(torch.float64)  # .to() moves both; the weight is a view again
    layer = moved.layers["model.layers.0.self_attn.q_proj"]
    assert layer.stacked.dtype == torch.float64
    assert layer.base_layer.weight.data_ptr() == layer.stacked.data_ptr()


def test_ops_per_decoded_token_beyond_the_base_model(model):
    """Per HoE layer and decoded token: +1 op with one λ, +0 merged, +2 with a λ per row, +4 with routers
    (the table in hoe.model.layer); the base model's own ops are the same."""
    base = build_model("llama")
    n_layers = len(model.layers)  # 7 projections x 2 blocks

    def greedy(m, **kw):
        return lambda n: m.generate(IDS, max_new_tokens=n, min_new_tokens=n, do_sample=False, **kw)

    base_ops = ops_per_decode_step(greedy(base))
    extra = {mode: ops_per_decode_step(greedy(model, preference=CASES[mode])) - base_ops for mode in CASES}
    model.merge_single_preference()
    try:
        extra["merged"] = ops_per_decode_step(greedy(model, preference=ONE)) - base_ops
    finally:
        model.merge_single_preference(False)
    assert extra == {"one": n_layers, "rows": 2 * n_layers, "routers": 4 * n_layers, "merged": 0}


@pytest.mark.parametrize("mode", list(CASES))
def test_a_compiled_decode_step_is_one_graph_with_the_eager_tokens(model, mode):
    """fullgraph=True raises on any graph break; the aot_eager backend traces exactly what inductor would
    compile, without compiling C++ (the benchmark compiles with inductor)."""
    torch._dynamo.reset()
    config = CompileConfig(fullgraph=True, dynamic=False, backend="aot_eager", mode=None)
    kw = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, preference=CASES[mode])
    eager = model.generate(IDS, **kw)
    compiled = model.generate(IDS, compile=config, **kw)
    assert torch.equal(eager, compiled)


def test_two_threads_with_different_preferences_get_what_each_gets_alone(model):
    kw = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False)
    alone = {name: model.generate(IDS, preference=p, **kw) for name, p in CASES.items()}
    together: dict[str, torch.Tensor] = {}
    threads = [
        threading.Thread(
            target=lambda n=n, p=p: together.__setitem__(n, model.generate(IDS, preference=p, **kw))
        )
        for n, p in CASES.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(alone[n], together[n]) for n in CASES)


def test_over_a_base_on_the_meta_device_every_tensor_the_layer_makes_is_on_meta():
    model = hoe_model(device="meta")
    for layer in model.layers.values():
        named = dict(layer.named_buffers()) | dict(layer.named_parameters())
        assert {n: t.device.type for n, t in named.items()} == {n: "meta" for n in named}
    with model.calling(model.routing_context(ROUTED, 3)):
        layer = next(iter(model.layers.values()))
        assert layer.call_gate.device.type == layer.call_mix.device.type == "meta"


def test_router_gradients_flow_through_the_reference_path_and_nothing_else_trains(model):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=IDS, preference=ROUTED).logits
    out.float().pow(2).mean().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(n.endswith(("router_weight", "router_bias")) for n in grads)
    assert all(p.grad.abs().sum() > 0 for p in model.router_parameters())
    model.zero_grad(set_to_none=True)


def test_a_biased_layer_after_a_routers_call_keeps_its_bias_exact():
    """A routers call keeping fewer rank rows writes router biases where a later call's A rows go: every
    call clears the A rows' bias (a Qwen-style biased projection)."""
    g = torch.Generator().manual_seed(3)
    base = torch.nn.Linear(6, 5, bias=True)
    experts = [
        LoraWeights(A=torch.randn(2, 6, generator=g), B=torch.randn(5, 2, generator=g)) for _ in range(3)
    ]
    layer = HoELinear(base, experts)
    layer.routing.add_router(torch.tensor([True, True, False]))
    layer.add_router()
    x = torch.randn(2, 3, 6, generator=g)

    def call(lora, routers, compact=True):
        layer.routing.enter(RoutingContext(lora, routers), compact)
        decode.prepare(layer)

    with torch.no_grad():
        call(torch.zeros(1, 3), torch.ones(1, 1))  # routers: keeps experts 0 and 1, 4 of 6 rows
        torch.testing.assert_close(layer(x), layer.reference_forward(x))
        call(torch.tensor([[0.2, 0.3, 0.5]]), torch.zeros(1, 1))  # one λ: all 6 rows
        torch.testing.assert_close(layer(x), layer.reference_forward(x))
        call(torch.tensor([[0.2, 0.3, 0.5]]), torch.zeros(1, 1), compact=False)
        torch.testing.assert_close(layer(x), layer.reference_forward(x))


def test_a_call_with_the_last_calls_gates_writes_nothing_and_sees_an_edited_weight():
    """The call state is cached on the gates, the options and the routing state's version: the same λ again
    writes nothing; a tracked optimiser's step or an expert edited and declared (weights_changed) is written
    again."""
    model = hoe_model()
    writes = []
    write = decode.write_gates

    def counted(layer, *args):
        writes.append(layer)
        return write(layer, *args)

    with patch.object(decode, "write_gates", counted):
        for mode in ("one", "routers"):
            first = logits(model, CASES[mode])
            writes.clear()
            torch.testing.assert_close(logits(model, CASES[mode]), first, rtol=0, atol=0)
            assert writes == []
        first, last = list(model.layers.values())[0], list(model.layers.values())[-1]
        optimizer = model.track(torch.optim.SGD(model.router_parameters(), lr=0.5))
        first.router_weight.grad = torch.ones_like(first.router_weight)
        optimizer.step()  # moves only the first layer's router weights
        fast = logits(model, ROUTED)
        assert writes == list(model.layers.values())  # a step rewrites every layer's call state
        with reference():
            torch.testing.assert_close(fast, logits(model, ROUTED), rtol=0, atol=1e-5)
        writes.clear()
        with torch.no_grad():
            last.lora_Bt.mul_(2.0)
        model.weights_changed()
        fast = logits(model, ROUTED)
        assert last in writes
        with reference():
            torch.testing.assert_close(fast, logits(model, ROUTED), rtol=0, atol=1e-5)
        model.merge_single_preference()
        merged = logits(model, ONE)
        writes.clear()
        torch.testing.assert_close(logits(model, ONE), merged, rtol=0, atol=0)
        assert writes == []
        with reference():
            torch.testing.assert_close(merged, logits(model, ONE), rtol=0, atol=1e-5)


def test_a_state_dict_loaded_into_the_model_is_what_the_next_call_decodes_with():
    """load_state_dict copies the routers' weights in place; the fast path then reads the new ones."""
    model, other = hoe_model(), hoe_model()
    with torch.no_grad():
        for p in other.router_parameters():
            p.mul_(-1.5)
    before = logits(model, ROUTED)  # the layers hold the first model's router rows now
    model.load_state_dict(other.state_dict())
    with reference():
        expected = logits(other, ROUTED)
    after = logits(model, ROUTED)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=0, atol=1e-5)
    fresh = hoe_model()  # into a submodule, and replacing the tensors (assign=True): the same
    logits(fresh, ROUTED)
    fresh.base_model.load_state_dict(other.base_model.state_dict(), assign=True)
    torch.testing.assert_close(logits(fresh, ROUTED), expected, rtol=0, atol=1e-5)


def test_no_stale_state_after_a_failed_write_or_a_merge_toggled_between_calls():
    """A write that fails halfway (out of memory, an interrupt) leaves no key claiming the old state; turning
    the merge off and on again without a call in between writes the merged copy again."""
    model = hoe_model(routers=False)
    with reference():
        expected = logits(model, ONE)
    logits(model, ONE)  # the layers hold ONE's state
    ctx = model.routing_context([0.8, 0.2, 0.0])  # ONE's cell: the same kept rows, other gates
    real_mul, calls = torch.mul, []

    def failing(*args, **kwargs):  # the second gate written fails, halfway through the second layer
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return real_mul(*args, **kwargs)

    with (
        patch.object(torch, "mul", failing),
        pytest.raises(RuntimeError, match="out of memory"),
        model.calling(ctx),
    ):
        pass
    torch.testing.assert_close(logits(model, ONE), expected, rtol=0, atol=1e-5)
    model.merge_single_preference()
    merged = logits(model, ONE)
    model.merge_single_preference(False)
    model.merge_single_preference()
    torch.testing.assert_close(logits(model, ONE), merged, rtol=0, atol=0)
