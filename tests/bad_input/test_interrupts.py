"""Real `extract`, `merge` and `train-expert` runs signalled half-way: nothing is ever lost.

Each run is stopped at a known point by ``pause_runner.py`` (it prints PAUSED there and waits), then sent
SIGINT or SIGKILL. Before every run the output holds a previous artifact (and, for the experts folder, a
sibling expert the run must not touch); afterwards it must be byte-identical. After SIGINT nothing else is
left behind and the CLI says what was kept (exit 130); after SIGKILL the leftovers are temporaries that the
next run removes (or an old copy it puts back) before it succeeds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bad_input.helpers import snapshot
from conftest import build_model, make_peft_adapter, save_model
from tiny_lm import save_tiny_causal_lm

RUNNER = Path(__file__).with_name("pause_runner.py")
TESTS = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):  # its own: a base, three adapters, a tiny LM and prompts
    root = tmp_path_factory.mktemp("interrupts")
    save_model(build_model("llama"), root / "base")
    for i, name in enumerate(("a", "b", "c"), start=1):
        make_peft_adapter(root / name, r=4, seed=i).rename(root / f"{name}-adapter")
    save_tiny_causal_lm(root / "lm")
    prompts = [{"prompt": p, "split": "train"} for p in ("hi there", "a story", "what now", "good day")]
    (root / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return root


def hoe(*args: object) -> subprocess.CompletedProcess:
    """``hoe ARGS`` in this process (the runs that are not signalled: fast)."""
    from hoe.cli import run

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, "", err.getvalue())


def interrupted(point: str, sig: int, *args: object) -> tuple[int, str]:
    """Start ``hoe ARGS`` paused at ``point``, send ``sig`` once it is there; return (exit code, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(TESTS), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), point, *map(str, args)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_default_sigint,  # a shell's background job ignores SIGINT, and its children inherit that
    )
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.rstrip().endswith("PAUSED"):  # a progress bar may share its line
            break
    else:
        proc.wait()
        pytest.fail(f"never reached {point}: {''.join(lines)}")
    proc.send_signal(sig)
    rest = proc.communicate(timeout=120)[1]
    return proc.returncode, "".join(lines) + rest


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kept(snap: dict[str, bytes]) -> dict[str, bytes]:
    """A snapshot without temporaries (what SIGKILL may leave) and partial runs (kept to resume)."""
    return {k: v for k, v in snap.items() if not any(t in k for t in (".tmp-", ".old-", ".partial"))}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name)


# ---------------------------------------------------------------- the three commands, with an artifact in place


def extract_args(inputs, out):
    args = ["extract", "--base", inputs / "base", "--tuned", f"helpful={inputs / 'c-adapter'}"]
    return [*args, "--tuned", f"harmless={inputs / 'b-adapter'}", "--rank", 2, "--out", out, "--overwrite"]


def prepare_extract(inputs, tmp_path):
    out = tmp_path / "experts"
    first = ["extract", "--base", inputs / "base", "--tuned", f"helpful={inputs / 'a-adapter'}", "--rank", 2]
    assert hoe(*first, "--out", out).returncode == 0
    (out / "mid").mkdir()
    (out / "mid" / "sibling.txt").write_text("a merged expert the run must keep")
    return out, extract_args(inputs, out)


def prepare_merge(inputs, tmp_path):
    out = tmp_path / "mid"
    experts = [f"helpful={inputs / 'a-adapter'}", f"harmless={inputs / 'b-adapter'}"]
    args = ["merge", "--expert", experts[0], "--expert", experts[1], "--preference", "0.5,0.5", "--rank", 2]
    assert hoe(*args, "--out", out).returncode == 0
    return out, [*args, "--method", "task_arithmetic", "--out", out, "--overwrite"]


def prepare_train(inputs, tmp_path):
    out = tmp_path / "expert"
    args = ["train-expert", "--base", inputs / "lm", "--prompts", inputs / "p.jsonl", "--objective"]
    args += ["py:tiny_lm:mean_char_code", "--batch-prompts", 2, "--samples-per-prompt", 2]
    args += ["--max-new-tokens", 4, "--checkpoint-every", 1, "--no-progress", "--out", out]
    assert hoe(*args, "--steps", 1).returncode == 0
    return out, [*args, "--steps", 3, "--seed", 1, "--overwrite"]


COMMANDS = {
    "extract": (prepare_extract, "hoe.experts.extract:write_adapter:2"),  # one of two experts written
    "merge": (prepare_merge, "hoe.experts.merge:task_svd:3"),  # two modules merged
    # step 1 checkpointed
    "train-expert": (prepare_train, "hoe.training.expert.recipe:ExpertRecipe.train_step:2"),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_sigint_half_way_keeps_the_old_artifact_and_says_so(inputs, tmp_path, command):
    prepare, point = COMMANDS[command]
    out, args = prepare(inputs, tmp_path)
    before = snapshot(tmp_path) if command != "train-expert" else snapshot(out)
    code, err = interrupted(point, signal.SIGINT, *args)
    assert code == 130 and "interrupted:" in err and "Traceback" not in err, err
    if command != "train-expert":
        assert "nothing was written to" in err, err
        assert snapshot(tmp_path) == before
        return
    assert "the last checkpoint (step 1) is in" in err and "is unchanged" in err, err
    assert snapshot(out) == before and not temporaries(tmp_path)
    partial = out.parent / f".{out.name}.partial"
    assert [p.name for p in (partial / "checkpoints").iterdir()] == ["step-000001"]
    finished = hoe(*[a for a in args if a != "--overwrite"], "--resume")
    assert finished.returncode == 0, finished.stderr
    record = json.loads((out / "hoe_training.json").read_text())
    assert [h["step"] for h in record["history"]] == [1, 2, 3] and not partial.exists()


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("point", ["half-way", "old-aside"])
def test_sigkill_loses_nothing_and_the_next_run_cleans_up(inputs, tmp_path, command, point):
    prepare, half_way = COMMANDS[command]
    out, args = prepare(inputs, tmp_path)
    old = snapshot(out)
    code, err = interrupted(half_way if point == "half-way" else "old-aside", signal.SIGKILL, *args)
    assert code == -signal.SIGKILL, err
    if point == "half-way":
        assert kept(snapshot(out)) == old  # the old artifact is untouched; the temporaries are extra
    else:
        assert not out.exists() or command == "extract"  # renamed aside, to be put back
    rerun = hoe(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert temporaries(tmp_path) == []
    if point == "old-aside":
        assert "restored" in rerun.stderr, rerun.stderr
    elif command != "train-expert":
        assert "a temporary left by a killed run" in rerun.stderr, rerun.stderr
    if command == "extract":
        assert (out / "mid" / "sibling.txt").is_file() and (out / "harmless").is_dir()


def test_sigint_while_replacing_waits_for_the_new_output(inputs, tmp_path):
    """Between the two renames that replace an output, Ctrl-C is held back until the new output is in place."""
    out, args = prepare_merge(inputs, tmp_path)
    old = snapshot(out)
    code, err = interrupted("old-aside", signal.SIGINT, *args)
    assert code == 130, err
    assert snapshot(out) != old and (out / "adapter_model.safetensors").is_file()
    assert temporaries(tmp_path) == []
