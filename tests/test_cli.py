"""The CLI end to end on a tiny model: extract -> merge -> build -> generate."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from hoe.cli import app

from conftest import build_model, make_peft_adapter, save_model
from tiny_lm import char_tokenizer


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_extract_merge_build_generate(tmp_path):
    base = save_model(build_model("llama"), tmp_path / "base")
    char_tokenizer().save_pretrained(base)
    a, b = make_peft_adapter(tmp_path / "a", seed=1), make_peft_adapter(tmp_path / "b", seed=2)
    out = invoke(
        "extract",
        "--base",
        str(base),
        "--tuned",
        f"helpful={a}",
        "--tuned",
        f"harmless={b}",
        "--rank",
        "3",
        "--out",
        str(tmp_path / "experts"),
    )
    assert "helpful:" in out and "rank 3" in out
    experts = tmp_path / "experts"
    invoke(
        "merge",
        "--expert",
        f"helpful={experts / 'helpful'}",
        "--expert",
        f"harmless={experts / 'harmless'}",
        "--preference",
        "helpful=0.5,harmless=0.5",
        "--method",
        "ties",
        "--density",
        "0.5",
        "--rank",
        "4",
        "--out",
        str(tmp_path / "mid"),
    )
    invoke(
        "build",
        "--base",
        str(base),
        "--expert",
        f"helpful={experts / 'helpful'}",
        "--expert",
        f"harmless={experts / 'harmless'}",
        "--expert",
        f"mid={tmp_path / 'mid'}",
        "--expert",
        f"tilted={tmp_path / 'mid'}@helpful=0.7,harmless=0.3",
        "--router",
        "r@0.3,0.7",
        "--out",
        str(tmp_path / "bundle"),
    )
    manifest = json.loads((tmp_path / "bundle" / "hoe_bundle.json").read_text())
    assert manifest["objectives"] == ["helpful", "harmless"]
    assert [e["anchor"] for e in manifest["experts"]][2:] == [
        {"helpful": 0.5, "harmless": 0.5},
        {"helpful": 0.7, "harmless": 0.3},
    ]
    assert manifest["routers"][0]["anchor"] == {"helpful": 0.3, "harmless": 0.7}
    text = invoke(
        "generate",
        "--model",
        str(tmp_path / "bundle"),
        "--preference",
        "helpful=0.6,harmless=0.4",
        "--chat",
        "--max-new-tokens",
        "5",
        "--temperature",
        "0",
        "--json",
        "hello",
        "world",
    )
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["prompt"] for r in rows] == ["hello", "world"]
    assert all(0 < len(r["response"]) <= 5 for r in rows)  # char tokenizer: one character per new token


def test_generate_text_with_a_plain_causal_lm(tmp_path):
    from hoe.generation.text import generate_text, load_tokenizer

    base = save_model(build_model("llama"), tmp_path / "base")
    char_tokenizer().save_pretrained(base)
    tokenizer = load_tokenizer(str(base))
    texts = generate_text(build_model("llama"), tokenizer, ["hi", "a longer prompt"], None, max_new_tokens=3)
    assert len(texts) == 2 and all(len(t) <= 3 for t in texts)
    assert tokenizer.padding_side == "left"


def test_version_and_usage_errors(capsys):
    from hoe import __version__
    from hoe.cli import run

    assert run(["--version"]) == 0 and capsys.readouterr().out == f"hoe {__version__}\n"
    assert run(["build", "--nope"]) == 2  # typer's own usage errors: its message, exit 2, no traceback
    err = capsys.readouterr().err
    assert "No such option: --nope" in err and "Traceback" not in err


def test_library_functions_have_the_commands_names():
    import hoe
    from hoe.cli import app

    commands = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    for command in commands:
        assert callable(getattr(hoe, command.replace("-", "_"))), command
