"""Bad numbers and options of `generate` and `build`: temperature, max_new_tokens, prompts (empty, longer than
the context), router names. Each is refused with exit 2 naming the flag (or PROMPT, the positional
argument), never a traceback, and nothing changes on disk. What can be checked without the model (preference,
temperature, max_new_tokens) is checked before it loads: these tests use a bundle whose base folder was
deleted, so an error about anything else means the model load was tried first.

The tiny Llama has a context of 512 positions (``max_position_embeddings``) and a character tokenizer (one
token per character, no special tokens), so token counts are character counts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hoe import HoEModel
from hoe.errors import ConfigError, ConfigErrors
from hoe.generation.text import generate_text, load_tokenizer

from bad_input.helpers import assert_refused, cli, snapshot

CONTEXT = 512
PREF = ["--preference", "helpful=0.5,harmless=0.5"]
LONG = " ".join(["word"] * 9_500)  # 47,499 characters = tokens, ~93x the context


@pytest.fixture(scope="module")
def loaded(tiny):
    model = HoEModel.from_pretrained(tiny.bundle)
    return model, load_tokenizer(str(tiny.base))


def generate(capsys, bundle: Path, *args: object) -> tuple[int, str]:
    return cli(capsys, "generate", "--model", bundle, *args)


# ----- checked before the model loads ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "flag", "words"),
    [
        (["--temperature", "inf"], "--temperature", "got inf"),
        (["--temperature", "nan"], "--temperature", "got nan"),
        (["--temperature", "-1"], "--temperature", "got -1.0"),
        (["--max-new-tokens", "0"], "--max-new-tokens", "got 0"),
        (["--max-new-tokens", "-3"], "--max-new-tokens", "got -3"),
    ],
)
def test_bad_numbers_before_loading(tiny, capsys, args, flag, words):
    before = snapshot(tiny.baseless)
    code, err = generate(capsys, tiny.baseless, *PREF, *args, "hi")
    assert_refused(code, err, flag)
    assert words in err and "--base" not in err, err
    assert snapshot(tiny.baseless) == before


def test_every_bad_number_is_reported(tiny, capsys):
    code, err = generate(capsys, tiny.baseless, *PREF, "--temperature", "inf", "--max-new-tokens", "0", "hi")
    assert_refused(code, err, "--temperature")
    assert "--max-new-tokens: got 0" in err, err


def test_preference_before_loading(tiny, capsys):
    """The base is gone, yet the bad preference is what is reported: it was checked first."""
    code, err = generate(capsys, tiny.baseless, "--preference", "funny=1", "hi")
    assert_refused(code, err, "--preference")
    assert "--base" not in err, err
    code, err = generate(capsys, tiny.baseless, *PREF, "hi")  # a good preference gets as far as the load
    assert_refused(code, err, "--base")


def test_bad_device_before_loading(tiny, capsys):
    code, err = generate(capsys, tiny.baseless, *PREF, "--device", "gpu0", "hi")
    assert_refused(code, err, "--device")


# ----- prompts ----------------------------------------------------------------------------------------------------
def test_empty_prompt(tiny, capsys):
    before = snapshot(tiny.bundle)
    code, err = generate(capsys, tiny.bundle, *PREF, "fine", "")
    assert_refused(code, err, "PROMPT")
    assert "prompt 1 is empty" in err and "use the chat template" in err and "--chat" not in err, err
    code, err = generate(capsys, tiny.bundle, *PREF, "--chat", "--max-new-tokens", "2", "")  # the fix works
    assert code == 0, err
    assert snapshot(tiny.bundle) == before


def test_prompt_longer_than_the_context(tiny, capsys):
    code, err = generate(capsys, tiny.bundle, *PREF, "--max-new-tokens", "4", LONG)
    assert_refused(code, err, "PROMPT")
    assert f"prompt 0 has {len(LONG)} tokens" in err and f"context of {CONTEXT} tokens" in err, err
    assert "--prompts" not in err, err  # generate has no such flag
    code, err = generate(capsys, tiny.bundle, *PREF, "--max-new-tokens", "4", "--truncate", LONG)
    assert code == 0, err


def test_max_new_tokens_filling_the_context(tiny, capsys):
    code, err = generate(capsys, tiny.bundle, *PREF, "--max-new-tokens", str(CONTEXT), "hi")
    assert_refused(code, err, "--max-new-tokens")
    assert f"holds {CONTEXT} tokens" in err, err


def test_truncate_keeps_the_last_tokens(loaded):
    """Truncated generation = generation from the prompt's last (context - max_new_tokens) characters."""
    model, tokenizer = loaded
    kw = dict(preference=[0.5, 0.5], max_new_tokens=3, temperature=0.0)
    keep = CONTEXT - 3
    assert generate_text(model, tokenizer, [LONG], truncate=True, **kw) == generate_text(
        model, tokenizer, [LONG[-keep:]], **kw
    )
    with pytest.raises(ConfigError, match=f"has {keep + 1} tokens"):
        generate_text(model, tokenizer, [LONG[-(keep + 1) :]], **kw)


def test_the_tokenizer_limit_counts_when_smaller(loaded):
    model, tokenizer = loaded
    tokenizer.model_max_length = 100
    try:
        with pytest.raises(ConfigError, match="context of 100 tokens"):
            generate_text(model, tokenizer, ["x" * 98], [0.5, 0.5], max_new_tokens=3)
    finally:
        tokenizer.model_max_length = int(1e30)


@pytest.mark.parametrize(
    ("prompts", "words"),
    [([], "no prompts"), ("hello", "list of strings"), (["ok", 3], r"prompt 1 is not a string \(got int\)")],
)
def test_library_prompts(loaded, prompts, words):
    model, tokenizer = loaded
    with pytest.raises(ConfigError, match=words) as info:
        generate_text(model, tokenizer, prompts, [0.5, 0.5])
    assert info.value.field == "prompts"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": -0.5}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 2.5}, "max_new_tokens"),
        ({"seed": [1, 2]}, "seed"),
        ({"seed": "7"}, "seed"),
    ],
)
def test_library_options(loaded, kw, field):
    model, tokenizer = loaded
    with pytest.raises(ConfigError) as info:
        generate_text(model, tokenizer, ["hi"], [0.5, 0.5], **kw)
    assert info.value.field == field and not isinstance(info.value, ConfigErrors)
    assert str(info.value).startswith(f"{field}: ")


# ----- build --router -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("routers", "words"),
    [
        (["@0.5,0.5"], "lacks a name"),
        (["r"], "lacks NAME@PREFERENCE"),
        (["r@"], "lacks NAME@PREFERENCE"),
        (["r@0.5,0.5", "r@0.2,0.8"], "'r' is given twice"),
        (["a/b@0.5,0.5"], "'a/b'"),
    ],
)
def test_bad_router(tiny, capsys, tmp_path, routers, words):
    out = tmp_path / "out"
    args = [
        "build",
        "--base",
        tiny.base,
        "--expert",
        f"helpful={tiny.helpful}",
        "--expert",
        f"harmless={tiny.harmless}",
    ]
    code, err = cli(capsys, *args, *(x for r in routers for x in ("--router", r)), "--out", out)
    assert_refused(code, err, "--router")
    assert words in err, err
    assert snapshot(out) is None


# ----- help ---------------------------------------------------------------------------------------------------
def test_help_shows_the_syntax(capsys):
    """Rich markup used to eat ``[@PREFERENCE]``; every generate option has a help text."""
    from hoe.cli import run

    assert run(["build", "--help"]) == 0
    assert "NAME=DIR[@PREFERENCE]" in capsys.readouterr().out
    assert run(["generate", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # unwrap the columns
    assert "--max-new-tokens <int> Most tokens generated per prompt" in out, out
    assert "--base <str> Base model to load the bundle on" in out, out
    assert "--truncate / --no-truncate Keep only the last tokens" in out, out


# ----- numbers beyond what torch takes (issue 24, item 8): exit 2 naming the flag, not a traceback ----------------
@pytest.mark.parametrize("seed", ["99999999999999999999999", "-1", str(2**63)])
def test_a_seed_out_of_range_is_refused_before_loading(tiny, capsys, seed):
    before = snapshot(tiny.baseless)
    code, err = generate(capsys, tiny.baseless, *PREF, "--seed", seed, "hi")
    assert_refused(code, err, "--seed")
    assert "2**63" in err and "--base" not in err, err
    assert snapshot(tiny.baseless) == before


def test_the_largest_seed_still_samples(loaded):
    from hoe.generation.text import MAX_SEED, generate_text

    model, tokenizer = loaded
    out = generate_text(model, tokenizer, ["hi", "yo"], "0.5,0.5", max_new_tokens=2, seed=MAX_SEED - 1)
    assert len(out) == 2
    with pytest.raises(ConfigError, match="^seed: got"):
        generate_text(model, tokenizer, ["hi", "yo"], "0.5,0.5", max_new_tokens=2, seed=MAX_SEED)


def test_evaluate_seed_out_of_range_is_refused_before_loading(tiny, capsys, tmp_path):
    code, err = cli(capsys, "evaluate", "--model", tiny.baseless, "--seed", "99999999999999999999999",
                    "--out", tmp_path / "e")  # fmt: skip
    assert_refused(code, err, "--seed")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(("args", "flag"), [(["--port", "70000"], "--port"), (["--port", "-1"], "--port"),
                                            (["--timeout", "inf"], "--timeout"), (["--timeout", "nan"], "--timeout")])  # fmt: skip
def test_serve_start_up_numbers_are_refused_before_loading(tiny, capsys, args, flag):
    code, err = cli(capsys, "serve", "--model", tiny.baseless, *args)
    assert_refused(code, err, flag)


def test_evaluate_does_not_suggest_a_truncation_it_has_not(loaded):
    from hoe.generation.text import prepare_batch

    model, tokenizer = loaded
    long = "word " * 4000
    with pytest.raises(ConfigError) as e:
        prepare_batch(model, tokenizer, [long], False, 8, None)  # what hoe evaluate asks for
    assert "truncation" not in str(e.value) and "fewer new tokens" in str(e.value)
    with pytest.raises(ConfigError, match="allow truncation"):
        prepare_batch(model, tokenizer, [long], False, 8, False)  # generate offers --truncate
