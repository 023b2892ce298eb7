"""Set-ups (``hoe setup``): the shipped ones check and plan what they should, bad files get errors naming the
key, the prompt formats give the authors' prompts, and a tiny set-up's plan runs, and runs again, end to end."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from hoe.cli import run
from hoe.cli.plan import check, plan
from hoe.data.prompts import load_prompts
from hoe.errors import ConfigError
from hoe.evaluation.identity import file_content
from hoe.setups import SETUPS, load_setup
from hoe.setups.prompts import PROMPT_FORMATS, dataset_prompts, select

from tiny_lm import save_tiny_causal_lm

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_every_shipped_setup_checks(name):
    steps = check(load_setup(name))
    commands = [s.argv[1] for s in steps]
    setup = load_setup(name)
    m, merged, routers = len(setup.objectives), len(setup.merge["anchors"]), len(setup.routers["anchors"])
    dataset = ["setup"] if "dataset" in setup.prompts else []
    assert commands == [*dataset, *["train-expert"] * m, "extract", *["merge"] * merged, "build",
                        *["train-router", "save-router"] * routers, "build", "evaluate"]  # fmt: skip


def _options(argv: tuple[str, ...]) -> dict[str, str]:
    """``--a 1 --b 2 --flag`` -> {a: "1", b: "2", flag: ""} (the last value of a repeated option)."""
    out, key = {}, None
    for a in argv:
        if a.startswith("--"):
            key = a[2:].replace("-", "_")
            out[key] = ""
        elif key is not None:
            out[key] = a
    return out


def test_the_smol3_setup_is_what_made_the_committed_experts_and_routers():
    """Each train-expert and train-router command of the plan carries the options recorded by the committed
    experts/smol3 runs."""
    steps = plan(load_setup("smol3"), "RUN")
    for step in (s for s in steps if s.argv[1] == "train-expert"):
        got = _options(step.argv)
        name = got["objective"].partition("=")[0]
        record = json.loads((ROOT / "experts/smol3" / name / "hoe_training.json").read_text())["config"]
        for key in ("steps", "lr", "lora_rank", "checkpoint_every", "dtype", "split"):
            assert (
                float(got[key]) == record[key] if key not in ("dtype", "split") else got[key] == record[key]
            )
    routers = [s for s in steps if s.argv[1] == "train-router"]
    recorded = sorted((ROOT / "experts/smol3/routers").glob("*/hoe_router_training.json"))
    assert len(routers) == len(recorded) == 2
    for step, path in zip(routers, recorded):
        record = json.loads(path.read_text())
        want = _options(tuple(shlex.split(record["command"])))
        got = _options(step.argv)
        for key in ("batch_size", "steps", "lr", "value_lr", "omd_horizon", "omd_step_size", "init_kl_coef",
                    "kl_horizon", "seed"):  # fmt: skip
            assert float(got[key]) == float(want[key]), (path.parent.name, key)
        assert got["scalarisation"] == want["scalarisation"] and got["reference"] == want["reference"]
        anchor = dict(kv.split("=") for kv in got["anchor"].split(","))
        assert {k: round(float(v), 4) for k, v in anchor.items()} == {
            k: round(v / sum(record["anchor"].values()), 4) for k, v in record["anchor"].items()
        }


BAD = [
    ('lr = 1e-3\nlora_rank', "lr_rate = 1e-3\nlora_rank", r"\[train_expert\]: No such option: --lr-rate"),
    ("lr = 1e-3\nvalue_lr", "lr = -1\nvalue_lr", r"routers\.lr: got -1\.0"),
    ("lr = 1e-3\nlora_rank", "lr = -1\nlora_rank", r"train_expert\.lr: got -1\.0"),
    ('positivity = "positivity"', 'positivity = "positivty"', r"objectives\.positivity: unknown objective"),
    ("relevance = 0.25, positivity = 0.5, brevity = 0.25", "relevance = 0.25, positive = 0.5",
     r"routers\.anchors\[1\]: .*Unknown objective\(s\) \['positive'\]"),
    ('method = "pcb"', 'method = "pcbx"', r"merge\.method: got 'pcbx'"),
    ('method = "pcb"', 'method = "pcb"\ndensity = 0.5', r"merge\.density: method pcb takes no option 'density'"),
    ("[extract]\nrank = 8", '[extract]\nrank = "eight"', r"extract\.rank: got 'eight'"),
    ("[extract]\nrank = 8", "[extract]\nsvd = 'full'", r"extract\.rank: extract has no rank"),
    ("grid = 4", 'grid = "four"', r"\[evaluate\]: Invalid value for '--grid'"),
    ('file = "smol"', 'file = "nothere.jsonl"', r"prompts\.file: no prompt set 'nothere\.jsonl'"),
    ('file = "smol"', 'dataset = "x/y"\nformat = "csv"', r"prompts\.format: .*Choose one of \['hh', 'safe-rlhf'"),
    ("[extract]", "[extrakt]", r"setup file: bad\.toml: unknown key\(s\) \['extrakt'\]"),
    ("relevance = 0.5, positivity = 0.5, brevity = 0 },", "relevance = 1, positivity = 0, brevity = 0 },",
     r"merge\.anchors\[0\]: merges one expert"),
    ("relevance = 0.5, positivity = 0, brevity = 0.5 },", "relevance = 0.3, positivity = 0.7, brevity = 0 },",
     r"merge\.anchors\[1\]: names the merged expert 'relevance-positivity', which is taken"),
    ("relevance = 0.25, positivity = 0.5, brevity = 0.25 },", "relevance = 0.001, positivity = 0.75, brevity = 0.25 },",
     r"routers\.anchors\[1\]: names a second router 'router-0\.00-0\.75-0\.25'"),
    ("[train_expert.relevance]", "[train_expert.relevence]", r"\[train_expert\]: has tables \['relevence'\]"),
    ("[extract]", '[tuned]\nrelevance = ""\n\n[extract]', r"tuned\.relevance: tuned model ''"),
    ('name = "smol3"', "name = 3", r"^name: bad\.toml: name is a int"),  # a key of the file, not --name
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "match"), BAD, ids=[b[2][:24] for b in BAD])
def test_a_bad_setup_is_refused_naming_its_key(tmp_path, old, new, match):
    text = SETUPS["smol3"].read_text()
    assert old in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        check(load_setup(bad))
    assert e.value.cli_message() and __import__("re").search(match, e.value.cli_message()), (
        e.value.cli_message()
    )


def test_the_prompt_formats_give_the_authors_prompts():
    hh = {"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello.\n\nHuman: Joke?\n\nAssistant: No."}
    assert PROMPT_FORMATS["hh"](hh) == "\n\nHuman: Hi?\n\nAssistant: Hello.\n\nHuman: Joke? \n\nAssistant:"
    assert PROMPT_FORMATS["safe-rlhf"]({"prompt": "How?"}) == "\n\nHuman:How? \n\nAssistant:"
    post = "word " * 30  # 150 characters
    got = PROMPT_FORMATS["summarize"]({"info": {"post": post.replace(" ", "\n", 1)}})
    assert (
        got
        == f"### Instruction: Generate a one-sentence summary of this post. ### Input: {post} ### Response: "
    )
    assert PROMPT_FORMATS["summarize"]({"info": {"post": "too short"}}) is None
    records = [{"info": {"id": i // 2, "post": post}} for i in range(8)]  # two comparisons per post
    assert len(select(records, PROMPT_FORMATS["summarize"], key=lambda r: r["info"]["id"])) == 4
    assert (
        len(select(records, PROMPT_FORMATS["summarize"], every=2, limit=3, key=lambda r: r["info"]["id"]))
        == 3
    )


def test_dataset_prompts_writes_one_jsonl_with_both_splits(tmp_path):
    data = {
        "train": [{"prompt": f"q{i}"} for i in range(6)],
        "test": [{"prompt": f"t{i}"} for i in range(30)],
    }
    calls = []

    def load(name, subset, split):
        calls.append((name, subset, split))
        return data[split]

    table = {
        "dataset": "PKU-Alignment/PKU-SafeRLHF-10K",
        "format": "safe-rlhf",
        "eval": {"split": "test", "every": 12},
    }
    out = dataset_prompts(table, tmp_path / "p.jsonl", load)
    assert calls == [(table["dataset"], None, "train"), (table["dataset"], None, "test")]
    assert [p.text for p in load_prompts(out, "eval")] == [
        f"\n\nHuman:t{i} \n\nAssistant:" for i in (0, 12, 24)
    ]
    assert len(load_prompts(out, "train")) == 6


def test_the_cli_checks_plans_and_says_what_prompts_need(capsys, tmp_path):
    assert run(["setup", "check", "smol3"]) == 0
    assert "smol3: ok (14 commands" in capsys.readouterr().out  # 3 experts, 3 merges, 2 routers
    assert run(["setup", "plan", "hh-rlhf", "--out", str(tmp_path / "run")]) == 0
    script = capsys.readouterr().out
    assert script.splitlines()[1] == "set -e"
    assert f"hoe setup prompts hh-rlhf --out {tmp_path / 'run' / 'prompts.jsonl'}" in script
    assert "--objective 'humor=hf:mohameddhiab/humor-no-humor@1#response'" in script
    try:
        import datasets  # noqa: F401
    except ImportError:
        assert run(["setup", "prompts", "hh-rlhf", "--out", str(tmp_path / "p.jsonl")]) == 2
        assert (
            "prompts.dataset: reading a Hugging Face dataset needs the datasets package"
            in capsys.readouterr().err
        )
        assert not (tmp_path / "p.jsonl").exists()


TINY = """
name = "tiny"
base = "{base}"
chat = false
[objectives]
a = "py:tiny_lm:count_a"
code = "py:tiny_lm:mean_char_code"
[prompts]
file = "{prompts}"
[train_expert]
steps = 2
lora_rank = 2
batch_prompts = 2
samples_per_prompt = 2
max_new_tokens = 4
checkpoint_every = 1
progress = false
[extract]
rank = 2
[merge]
method = "ties"
rank = 2
anchors = [[1, 1]]
[routers]
anchors = [[1, 1]]
steps = 1
batch_size = 2
minibatches = 1
micro_batch = 2
calibration_prompts = 2
omd_horizon = 2
max_new_tokens = 4
checkpoint_every = 1
progress = false
[evaluate]
methods = "hoe,soup"
reference_point = "a=0,code=0"
grid = 1
limit = 2
max_new_tokens = 4
progress = false
"""


def test_a_tiny_setups_plan_runs_end_to_end_and_again(tmp_path, capsys):
    base = save_tiny_causal_lm(tmp_path / "base", chat=False)
    prompts = tmp_path / "prompts.jsonl"
    lines = [
        {"prompt": f"tell me about {w}", "split": s}
        for s in ("train", "eval")
        for w in ("cats", "a", "b", "c")
    ]
    prompts.write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "tiny.toml").write_text(TINY.format(base=base, prompts=prompts))
    out = tmp_path / "run"
    steps = check(load_setup(tmp_path / "tiny.toml"), out)
    for step in steps:
        assert run(list(step.argv[1:])) == 0, (step.shell(), capsys.readouterr().err)
    results = json.loads((out / "eval" / "results.json").read_text())
    assert set(results["methods"]) == {"hoe", "soup"}
    manifest = json.loads((out / "bundle-routers" / "hoe_bundle.json").read_text())
    assert len(manifest["experts"]) == 3 and len(manifest["routers"]) == 1
    trained = [
        out / "tuned" / "a" / "adapter_model.safetensors",
        out / "routers" / "router-0.50-0.50" / "router" / "router.safetensors",
    ]
    before = [file_content(p) for p in trained]
    for step in steps:  # an interrupted run is rerun whole: the trained parts resume at their end, the
        assert run(list(step.argv[1:])) == 0, step.shell()  # evaluation keeps its points
    assert [file_content(p) for p in trained] == before
    assert json.loads((out / "tuned" / "a" / "hoe_training.json").read_text())["steps_done"] == 2
    for step in steps:  # and again: a finished run's last checkpoint stays in its folder, to resume from
        assert run(list(step.argv[1:])) == 0, step.shell()


def test_auto_router_anchors_plan_placement_then_the_picks(tmp_path):
    text = SETUPS["smol3"].read_text()
    start = text.index("anchors = [\n  { relevance = 0, positivity = 0.75, brevity = 0.25 },")
    end = text.index("]\n", start) + 2
    auto = tmp_path / "auto.toml"
    auto.write_text(text[:start] + 'anchors = "auto"\ncount = 2\nplacement = { limit = 32 }\n' + text[end:])
    steps = check(load_setup(auto), "RUN")
    commands = [s.argv[1] for s in steps]
    assert commands[commands.index("build") + 1 :] == [
        "evaluate", "place-routers", "train-router", "save-router", "train-router", "save-router", "build", "evaluate"
    ]  # fmt: skip
    sweep, place, first = (steps[commands.index("build") + k] for k in (1, 2, 3))
    want = {"methods": "hoe-lora", "split": "train", "limit": "32", "grid": "4", "samples": "2"}
    assert _options(sweep.argv).items() >= want.items()
    assert (
        _options(place.argv)["routers"] == "2"
        and _options(place.argv)["out"] == "RUN/placement/placement.json"
    )
    assert _options(first.argv)["anchor"] == "auto:1" and _options(first.argv)["name"] == "placed-1"
    assert _options(first.argv)["placement"] == "RUN/placement/placement.json"
    for bad, match in [('anchors = "auto"\ncount = 0', r"routers\.count: got 0"),
                       ('anchors = "auto"\ncount = 2\nplacement = { limt = 3 }', r"routers\.placement: got"),
                       ("count = 2\nanchors = []", r"\[routers\]: count and placement go with anchors")]:  # fmt: skip
        auto.write_text(text[:start] + bad + "\n" + text[end:])
        with pytest.raises(ConfigError, match=match):
            check(load_setup(auto))
