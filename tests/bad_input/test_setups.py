"""Hostile set-up files (issue 24): no value reaches the script ``hoe setup plan`` prints as anything but text."""

from __future__ import annotations

import subprocess

import pytest

from hoe.cli.setups import comment
from hoe.setups import SETUPS

from bad_input.helpers import assert_refused, cli

SMOL3 = SETUPS["smol3"].read_text()

# (what it replaces in smol3.toml, the hostile text, the key the error names)
CASES = [
    ('about = "SmolLM2', 'about = "hi\\ntouch pwned\\n# SmolLM2', "error: about:"),
    ('name = "smol3"', 'name = "x\\rtouch pwned"', "error: name:"),
    ('name = "smol3"', 'name = "x\\u2028touch pwned"', "error: name:"),
    ('base = "smollm2-135m-instruct"', 'base = "smollm2-135m-instruct\\n"', "error: base:"),
    ('relevance = "relevance"', '"rel\\nevance" = "relevance"', "error: objectives:"),
    ('brevity = "brevity"', 'brevity = "brevity\\u0085"', "error: objectives.brevity:"),
    ('file = "smol"', 'file = "smol\\u0000"', "error: prompts.file:"),
    ('methods = "hoe,hoe-lora', 'methods = "hoe\\n,hoe-lora', "error: evaluate.methods:"),
    ("{ relevance = 0.5, positivity = 0.5, brevity = 0 },", '"x\\ny",', "error: merge.anchors[0]:"),
]


@pytest.mark.parametrize(("old", "new", "flag"), CASES, ids=[c[2][7:-1] for c in CASES])
def test_control_characters_in_a_setup_are_refused_and_no_script_is_printed(tmp_path, capsys, old, new, flag):
    assert old in SMOL3
    bad = tmp_path / "bad.toml"
    bad.write_text(SMOL3.replace(old, new, 1))
    for command in ("check", "plan"):
        capsys.readouterr()
        from hoe.cli import run

        code = run(["setup", command, str(bad), "--out", str(tmp_path / "run")] if command == "plan"
                   else ["setup", command, str(bad)])  # fmt: skip
        out = capsys.readouterr()
        assert_refused(code, out.err, flag)
        assert "control character" in out.err and out.out == ""  # nothing of the script is printed


def test_the_printed_plan_runs_no_line_it_was_not_meant_to(tmp_path, capsys):
    """Even text that reached a comment unchecked could not end it: the comment escapes it."""
    assert comment("hi\ntouch pwned\r\u2028x") == "# hi\\ntouch pwned\\r\\u2028x"
    code, err = cli(capsys, "setup", "plan", "smol3", "--out", tmp_path / "run")
    script = capsys.readouterr().out
    assert code == 0, err
    # every line is a comment, blank, `set -e` or a hoe command: bash -n parses it and nothing else is run
    assert all(line == "" or line.startswith(("# ", "hoe ", "set -e")) for line in script.splitlines())
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


@pytest.mark.parametrize("objectives", ["[objectives]\n", '[objectives]\nrelevance = "relevance"\n'])
def test_too_few_objectives_are_named_as_such(tmp_path, capsys, objectives):
    start = SMOL3.index("[objectives]")
    end = SMOL3.index("[prompts]")
    bad = tmp_path / "bad.toml"
    bad.write_text(SMOL3[:start] + objectives + "\n" + SMOL3[end:])
    code, err = cli(capsys, "setup", "check", bad)
    assert_refused(code, err, "error: objectives: bad.toml: [objectives] names")
    assert "merge.anchors" not in err
