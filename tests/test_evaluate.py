"""``hoe evaluate`` on a tiny bundle with toy objectives: the whole run, what it writes, paired responses at
the vertices, resuming without recomputing, refusing to mix settings, and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from hoe import EvaluateConfig, evaluate
from hoe.errors import ConfigError
from hoe.evaluation.methods import Method
from test_rs_mod import perturbed

from bad_input.helpers import assert_refused, cli, snapshot
from conftest import save_model, tiny_bundle

PROMPTS = ["hello there", "tell me a story", "what is up", "name a color"]
OBJECTIVES = ["helpful=py:tiny_lm:upper_share", "harmless=py:tiny_lm:mean_char_code"]
FAST = dict(samples=2, max_new_tokens=6, reference_point="0,0", objective=OBJECTIVES, bootstrap=50)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Llama base (char tokenizer); two PEFT adapters, extracted at rank 2 (so the LoRA experts are
    not the tuned models) into a bundle with an untrained router; two full fine-tunes; a prompt file."""
    root = tmp_path_factory.mktemp("evaluate")
    base, adapters, bundle = tiny_bundle(root, routers={"mid": "0.5,0.5"})
    full = {
        name: save_model(perturbed(s, 0.5), root / f"full{s}")
        for s, name in ((3, "helpful"), (4, "harmless"))
    }
    (root / "p.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return SimpleNamespace(root=root, bundle=bundle, adapters=adapters, full=full, prompts=root / "p.jsonl")


def config(tiny, out, **kw) -> EvaluateConfig:
    return EvaluateConfig(
        **{"model": str(tiny.bundle), "out": str(out), "prompts": str(tiny.prompts), **FAST, **kw}
    )


def points(out: Path, method: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "points" / method).glob("*.json"))}


@pytest.fixture
def count_generations(monkeypatch):
    """Counts Method.generate calls (one per batch of prompts)."""
    calls = []
    original = Method.generate

    def counted(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Method, "generate", counted)
    return calls


def test_evaluate_end_to_end_from_the_cli(tiny, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["evaluate", "--model", tiny.bundle, "--prompts", tiny.prompts, "--out", out, "--grid", "2",
            "--samples", "2", "--max-new-tokens", "6", "--reference-point", "helpful=0,harmless=0",
            "--bootstrap", "50", "--no-progress"]  # fmt: skip
    for spec in OBJECTIVES:
        args += ["--objective", spec]
    from hoe.cli import run

    capsys.readouterr()
    code = run([str(a) for a in args])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "| hoe |" in printed.out and f"results written to {out}" in printed.out  # the summary table
    results = json.loads((out / "results.json").read_text())
    assert {
        "objectives",
        "reference_point",
        "config",
        "versions",
        "command",
        "methods",
        "best_baseline",
    } <= set(results)
    assert results["objectives"] == ["helpful", "harmless"]
    assert results["reference_point"] == {"helpful": 0.0, "harmless": 0.0}
    methods = results["methods"]
    assert list(methods) == ["hoe", "hoe-lora", "soup", "rs", "mod", "base", "experts"]
    for name, m in methods.items():
        assert {"points", "hypervolume", "hypervolume_ci", "controllability", "tchebycheff",
                "tokens_per_second", "forward_passes_per_token"} <= set(m), name  # fmt: skip
        lo, hi = m["hypervolume_ci"]
        assert lo <= m["hypervolume"] <= hi
        all_copied = m["copied_points"] == len(m["points"])  # soup and experts here (see the test below)
        assert m["tokens_per_second"] is None if all_copied else m["tokens_per_second"] > 0
        assert all(p["n"] == len(PROMPTS) and p["samples"] == 2 for p in m["points"])
    assert [len(methods[m]["points"]) for m in methods] == [
        3,
        3,
        3,
        3,
        3,
        1,
        2,
    ]  # grid 2: 3 points; 2 experts
    assert methods["base"]["controllability"] == {"helpful": 0.0, "harmless": 0.0}  # it ignores λ
    assert methods["experts"]["controllability"] is None
    # MOD runs both models between the vertices: 1, 1, 2 passes per token over the grid
    assert [p["forward_passes_per_token"] for p in methods["mod"]["points"]] == [1, 1, 2]
    assert (
        methods["mod"]["forward_passes_per_token_max"] == 2 and methods["rs"]["forward_passes_per_token"] == 1
    )
    best = results["best_baseline"]
    assert best not in ("hoe", "hoe-lora") and methods[best]["hypervolume_ratio"] == 1.0
    ratios = methods["hoe"]["hypervolume_ratios"]  # HoE against every other method, hoe-lora included
    assert list(ratios) == ["hoe-lora", "soup", "rs", "mod", "base", "experts"]
    for other, r in ratios.items():
        hv = methods[other]["hypervolume"]
        if hv > 0:
            assert r["ratio"] == pytest.approx(methods["hoe"]["hypervolume"] / hv, rel=1e-4)
            assert r["ci"][0] <= r["ci"][1]
        else:  # no hypervolume to divide by
            assert r == {"ratio": None, "ci": None}
    assert (
        list(methods["hoe-lora"]["hypervolume_ratios"])[0] == "hoe"
        and "hypervolume_ratios" not in methods["rs"]
    )
    table = (out / "results.md").read_text()
    assert "| hoe |" in table and f"HV / {best}" in table and "## experts" in table
    assert "HV ratio [CI] of each row to each column" in table and "| | hoe-lora | soup |" in table
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "points").rglob("*.json"))) == 18


def test_rs_mod_and_the_expert_answer_identically_at_a_vertex(tiny, tmp_path):
    """Same model, same seeds: at λ = e_i the three give the same responses, for PEFT-adapter sources (the
    bundle's records) and for full fine-tunes (--tuned); between the vertices they differ."""
    for tuned, out in (({}, tmp_path / "adapters"), (tiny.full, tmp_path / "full")):
        cfg = config(tiny, out, methods="rs,mod,experts", grid=2, tuned=tuned, reuse=False)  # all generated
        evaluate(cfg, progress=False)
        rs, mod, experts = points(out, "rs"), points(out, "mod"), points(out, "experts")
        for vertex, name in (("1.0000-0.0000", "helpful"), ("0.0000-1.0000", "harmless")):
            assert rs[vertex]["responses"] == mod[vertex]["responses"] == experts[name]["responses"]
            assert rs[vertex]["rewards"] == experts[name]["rewards"]
        assert experts["helpful"]["responses"] != experts["harmless"]["responses"]
        middle = "0.5000-0.5000"
        assert rs[middle]["responses"] != mod[middle]["responses"]  # one merged model vs fused decoding
    assert (
        points(tmp_path / "full", "rs")["1.0000-0.0000"]
        != points(tmp_path / "adapters", "rs")["1.0000-0.0000"]
    )


def test_resume_loads_every_finished_point_and_computes_only_the_rest(tiny, tmp_path, count_generations):
    out = tmp_path / "eval"
    cfg = config(tiny, out, methods="soup,rs,base", grid=2, batch_size=2)
    per_point = 2 * 2  # samples x batches of 2 prompts
    original = Method.generate

    def interrupt_after_two_points(self, *args, **kwargs):
        if len(count_generations) > 2 * per_point:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    first = evaluate(cfg, progress=False)
    assert len(count_generations) == 7 * per_point  # 3 + 3 + 1 points
    count_generations.clear()
    again = evaluate(cfg, progress=False)  # everything is stored: nothing is generated
    assert count_generations == []
    assert again["methods"]["rs"]["points"] == first["methods"]["rs"]["points"]
    assert again["methods"]["soup"]["hypervolume_ci"] == first["methods"]["soup"]["hypervolume_ci"]

    # an interrupted run keeps the points it finished, and the next one computes only the others
    partial = tmp_path / "partial"
    Method.generate, saved = interrupt_after_two_points, Method.generate
    try:
        with pytest.raises(KeyboardInterrupt) as interrupted:
            evaluate(config(tiny, partial, methods="soup,rs,base", grid=2, batch_size=2), progress=False)
    finally:
        Method.generate = saved
    assert "2 of 7 points are stored" in " ".join(interrupted.value.__notes__)
    assert len(list((partial / "points").rglob("*.json"))) == 2 and not (partial / "results.json").exists()
    count_generations.clear()
    resumed = evaluate(config(tiny, partial, methods="soup,rs,base", grid=2, batch_size=2), progress=False)
    assert len(count_generations) == 5 * per_point
    assert (
        resumed["methods"]["rs"]["points"] == first["methods"]["rs"]["points"]
    )  # paired seeds, same numbers


def test_a_point_another_method_computes_identically_is_copied(tiny, tmp_path, count_generations):
    """Two objectives, vertex experts and a router at the middle, grid 2: HoE reaches no router at the
    vertices (so hoe-lora and soup are HoE there), soup is hoe-lora in the middle (the only LoRA experts are
    the vertices), and mod and experts are rs at the vertices: 8 of 14 points are generated, and each copy
    equals the point as generated on its own."""
    methods = "hoe,hoe-lora,soup,rs,mod,experts"
    fresh = evaluate(config(tiny, tmp_path / "all", methods=methods, grid=2, reuse=False), progress=False)
    count_generations.clear()
    reused = evaluate(config(tiny, tmp_path / "reuse", methods=methods, grid=2), progress=False)
    per_point = 2  # samples x one batch of 4 prompts
    assert len(count_generations) == 8 * per_point
    copies = {
        name: {p["label"]: p["copied_from"] for p in m["points"] if p["copied_from"]}
        for name, m in reused["methods"].items()
    }
    v1, mid, v2 = "1.0000-0.0000", "0.5000-0.5000", "0.0000-1.0000"
    assert copies == {
        "hoe": {},
        "hoe-lora": {v1: f"hoe/{v1}", v2: f"hoe/{v2}"},
        "soup": {v1: f"hoe/{v1}", mid: f"hoe-lora/{mid}", v2: f"hoe/{v2}"},
        "rs": {},
        "mod": {v1: f"rs/{v1}", v2: f"rs/{v2}"},
        "experts": {"helpful": f"rs/{v1}", "harmless": f"rs/{v2}"},
    }
    for name in copies:
        a, b = points(tmp_path / "all", name), points(tmp_path / "reuse", name)
        assert {k: (p["responses"], p["rewards"]) for k, p in a.items()} == {
            k: (p["responses"], p["rewards"]) for k, p in b.items()
        }
        assert reused["methods"][name]["hypervolume"] == fresh["methods"][name]["hypervolume"]
    assert reused["methods"]["experts"]["tokens_per_second"] is None  # nothing of it was decoded
    assert reused["methods"]["soup"]["copied_points"] == 3
    count_generations.clear()
    evaluate(config(tiny, tmp_path / "reuse", methods=methods, grid=2), progress=False)  # resumes: all stored
    assert count_generations == []


def quality(results: dict) -> dict:
    """What results.json says of each method's quality (timings left out)."""
    keep = ("hypervolume", "hypervolume_ci", "controllability", "tchebycheff")
    return {
        name: {
            **{k: m.get(k) for k in keep},
            "points": [(p["label"], p["mean"], p["copied_from"]) for p in m["points"]],
        }
        for name, m in results["methods"].items()
    }


SHARDED = dict(methods="hoe,hoe-lora,soup,rs", grid=2)


def test_two_shards_store_each_point_once_and_write_the_results_one_process_writes(
    tiny, tmp_path, count_generations
):
    """--shard 0/2 then 1/2 into one folder: the first stores its points and writes no results; the second,
    finding every point stored, writes results equal to one process's; together they generate what one
    process does (points computed identically stay in one shard and are copied there)."""
    one = evaluate(config(tiny, tmp_path / "one", **SHARDED), progress=False)
    alone = len(count_generations)
    count_generations.clear()
    assert evaluate(config(tiny, tmp_path / "two", shard="0/2", **SHARDED), progress=False) is None
    first = len(count_generations)
    assert 0 < first < alone and not (tmp_path / "two" / "results.json").exists()
    two = evaluate(config(tiny, tmp_path / "two", shard="1/2", **SHARDED), progress=False)
    assert len(count_generations) == alone  # no point generated twice, none left out
    assert quality(two) == quality(one)
    assert json.loads((tmp_path / "two" / "results.json").read_text())["methods"] == two["methods"]
    for name in SHARDED["methods"].split(","):
        a, b = points(tmp_path / "one", name), points(tmp_path / "two", name)
        assert {k: (p["responses"], p["rewards"]) for k, p in a.items()} == {
            k: (p["responses"], p["rewards"]) for k, p in b.items()
        }


@pytest.mark.parametrize("shard", ["2/2", "1", "-1/2", "a/b", "0/0"])
def test_a_bad_shard_is_refused_naming_it(tiny, tmp_path, shard):
    with pytest.raises(ConfigError) as e:
        config(tiny, tmp_path / "x", shard=shard)
    assert e.value.field == "shard"


def test_under_torchrun_two_processes_write_what_one_writes(tiny, tmp_path):
    """torchrun, 2 CPU processes (gloo): each rank computes its shard; rank 0 writes results.json after both."""
    import os
    import socket
    import subprocess
    import sys

    one = evaluate(config(tiny, tmp_path / "one", **SHARDED), progress=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tests = Path(__file__).resolve().parent
    env = {
        **os.environ,
        "PYTHONPATH": f"{tests}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    args = [
        "evaluate", "--model", str(tiny.bundle), "--out", str(tmp_path / "two"), "--prompts", str(tiny.prompts),
        "--methods", SHARDED["methods"], "--grid", "2", "--samples", "2", "--max-new-tokens", "6",
        "--reference-point", "0,0", "--bootstrap", "50", "--no-progress",
        *[a for o in OBJECTIVES for a in ("--objective", o)],
    ]  # fmt: skip
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", str(port), "-m", "hoe", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results written to") == 1  # rank 0 writes; rank 1 says its points are stored
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert quality(two) == quality(one)


def test_new_routers_redo_only_the_points_that_use_them(tiny, tmp_path, count_generations):
    """hoe-lora and soup do not depend on the routers; HoE at the vertices reaches none, so those points are
    copied from hoe-lora's stored ones: only HoE's middle point is generated again."""
    import shutil

    from safetensors.torch import load_file, save_file

    out, other = tmp_path / "eval", tmp_path / "retrained"
    evaluate(config(tiny, out, methods="hoe,hoe-lora,soup", grid=2), progress=False)
    shutil.copytree(tiny.bundle, other)
    routers = load_file(other / "routers.safetensors")
    save_file({k: v + 0.5 for k, v in routers.items()}, other / "routers.safetensors")
    with pytest.raises(ConfigError) as e:
        evaluate(config(tiny, out, methods="hoe,hoe-lora,soup", grid=2, model=str(other)), progress=False)
    assert e.value.field == "model" and "hoe results" in str(e.value)
    count_generations.clear()
    cfg = config(tiny, out, methods="hoe,hoe-lora,soup", grid=2, model=str(other), overwrite=True)
    redone = evaluate(cfg, progress=False)
    assert count_generations == ["HoE"] * 2  # the middle point: 2 samples of one batch
    copies = {p["label"]: p["copied_from"] for p in redone["methods"]["hoe"]["points"]}
    assert copies == {
        "1.0000-0.0000": "hoe-lora/1.0000-0.0000",
        "0.5000-0.5000": None,
        "0.0000-1.0000": "hoe-lora/0.0000-1.0000",
    }


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(samples=3), "samples"),
        (dict(seed=1), "seed"),
        (dict(max_new_tokens=5), "max_new_tokens"),
        (dict(temperature=0.5), "temperature"),
        (dict(limit=3), "prompts"),
        (dict(objective=["helpful=py:tiny_lm:count_a", OBJECTIVES[1]]), "objective"),
    ],
)
def test_a_changed_setting_is_refused_not_mixed(tiny, tmp_path, change, field, count_generations):
    out = tmp_path / "eval"
    evaluate(config(tiny, out, methods="soup", grid=1), progress=False)
    before, calls = snapshot(out), len(count_generations)
    with pytest.raises(ConfigError) as e:
        evaluate(config(tiny, out, methods="soup", grid=1, **change), progress=False)
    assert e.value.field == field and "other settings" in str(e.value)
    assert snapshot(out) == before and len(count_generations) == calls
    redone = evaluate(config(tiny, out, methods="soup", grid=1, overwrite=True, **change), progress=False)
    assert len(count_generations) == calls + 2 * (3 if field == "samples" else 2)  # both points redone
    assert redone["config"][next(iter(change))] == next(iter(change.values()))


def test_more_methods_and_points_reuse_what_is_stored(tiny, tmp_path, count_generations, capsys):
    out = tmp_path / "eval"
    evaluate(config(tiny, out, methods="soup", grid=1), progress=False)
    count_generations.clear()
    capsys.readouterr()
    results = evaluate(config(tiny, out, methods="soup,base", grid=2), progress=True)
    assert count_generations == ["LinearSoup"] * 2 + ["Base"] * 2  # only the new soup point and base
    assert len(results["methods"]["soup"]["points"]) == 3
    err = capsys.readouterr().err
    assert "evaluate: 100%" in err and "4/4" in err  # the progress bar over the (method, λ) points


def cli_args(tiny, out, *extra) -> list:
    args = ["evaluate", "--model", tiny.bundle, "--prompts", tiny.prompts, "--out", out, "--no-progress"]
    for spec in OBJECTIVES:
        args += ["--objective", spec]
    return [*args, *extra]


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--methods", "hoe,nope", "--reference-point", "0,0"], "--methods"),
        (["--methods", "rs,rs", "--reference-point", "0,0"], "--methods"),
        (["--grid", "0", "--reference-point", "0,0"], "--grid"),
        (["--samples", "0", "--reference-point", "0,0"], "--samples"),
        ([], "--reference-point"),  # toy objectives: no default reference point
        (["--reference-point", "0,0,0"], "--reference-point"),
        (["--reference-point", "helpful=0"], "--reference-point"),
        (["--reference-point", "0,nan"], "--reference-point"),
        (["--reference-point", "0,0", "--methods", "soup", "--tuned", "helpful=x"], "--tuned"),
        (["--reference-point", "0,0", "--tuned", "funny=x"], "--tuned"),
        (["--reference-point", "0,0", "--tuned", "helpful=/no/such/model"], "--tuned"),
        (["--reference-point", "0,0", "--preference", "helpful=-1"], "--preference"),
    ],
)
def test_bad_inputs_are_refused_before_anything_is_written(tiny, tmp_path, capsys, extra, flag):
    out = tmp_path / "eval"
    code, err = cli(capsys, *cli_args(tiny, out, *extra))
    assert_refused(code, err, flag)
    assert snapshot(out) is None


def test_a_stored_folder_is_left_as_it_was_when_refused(tiny, tmp_path, capsys):
    out = tmp_path / "eval"
    evaluate(config(tiny, out, methods="base", grid=1), progress=False)
    before = snapshot(out)
    same = ["--methods", "base", "--reference-point", "0,0", "--max-new-tokens", "6"]
    code, err = cli(capsys, *cli_args(tiny, out, *same, "--samples", "1", "--seed", "3"))
    assert_refused(code, err, "--samples")
    assert "--seed" in err and "--max-new-tokens" not in err  # every changed setting, and only those
    assert snapshot(out) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, err = cli(capsys, *cli_args(tiny, tmp_path / "other", "--reference-point", "0,0"))
    assert_refused(code, err, "--out")
    assert snapshot(tmp_path / "other") == {"notes.txt": b"mine"}


def test_the_smol3_reference_point_is_the_default_only_for_the_smol3_objectives():
    from hoe.evaluation.evaluate import reference_point

    names = ["relevance", "positivity", "brevity"]
    assert reference_point(None, names, names).tolist() == [0.0, -0.5, 0.0]
    assert reference_point(None, names, ["relevance", "positivity", "brevity:32"]).tolist() == [
        0.0,
        -0.5,
        0.0,
    ]
    with pytest.raises(ConfigError) as e:  # same names, other scorers: BENCH's point says nothing about them
        reference_point(None, names, ["relevance=py:tiny_lm:count_a", "positivity", "brevity"])
    assert e.value.field == "reference_point"
    assert reference_point("brevity=0.1,relevance=0.2,positivity=0", names, names).tolist() == [0.2, 0.0, 0.1]
