"""Output paths: refused before any work when they cannot be written, existing artifacts never lost, and
what killed runs left behind cleaned up (or put back) by the next run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hoe.io.atomic import check_output_dir

from bad_input.helpers import assert_refused, cli, snapshot
from tiny_lm import save_tiny_causal_lm


def experts_args(inputs) -> list[object]:
    return ["--expert", f"helpful={inputs['helpful']}", "--expert", f"harmless={inputs['harmless']}"]


def commands(inputs, tmp_path, out) -> dict[str, list[object]]:
    """One command line per command that writes, all writing to ``out``."""
    tuned = ["--tuned", f"helpful={inputs['adapter']}"]
    lm = tmp_path / "lm"
    if not lm.exists():
        save_tiny_causal_lm(lm)
    return {
        "extract": ["extract", "--base", inputs["base"], *tuned, "--rank", 2, "--out", out, "--no-progress"],
        "merge": ["merge", *experts_args(inputs), "--preference", "0.5,0.5", "--rank", 2, "--out", out],
        "build": ["build", "--base", inputs["base"], *experts_args(inputs), "--out", out],
        "train-expert": ["train-expert", "--base", lm, "--objective", "brevity", "--steps", 1, "--out", out],
    }


@pytest.mark.parametrize("command", ["extract", "merge", "build", "train-expert"])
def test_out_under_a_file_is_refused_before_any_work(inputs, tmp_path, capsys, command):
    (tmp_path / "a_file").write_text("precious")
    before = snapshot(tmp_path / "a_file")
    code, err = cli(capsys, *commands(inputs, tmp_path, tmp_path / "a_file" / "out")[command])
    assert_refused(code, err, "--out")
    assert "which is a file" in err and snapshot(tmp_path / "a_file") == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere, so no folder is unwritable")
def test_unwritable_out_is_refused(inputs, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, err = cli(capsys, *commands(inputs, tmp_path, locked / "out")["build"])
    assert_refused(code, err, "--out")
    assert "permission denied" in err and list(locked.iterdir()) == []


@pytest.mark.parametrize("command", ["merge", "build", "train-expert"])
def test_the_current_folder_cannot_be_replaced(inputs, tmp_path, capsys, monkeypatch, command):
    here = tmp_path / "here"
    here.mkdir()
    (here / "precious.txt").write_text("keep me")
    monkeypatch.chdir(here)
    args = commands(inputs, tmp_path, ".")[command]
    code, err = cli(capsys, *args, "--overwrite")
    assert_refused(code, err, "--out")
    assert "current folder" in err and snapshot(here) == {"precious.txt": b"keep me"}
    code, err = cli(capsys, *args[:-1], "..", "--overwrite")  # a folder holding the current one
    assert_refused(code, err, "--out")


def test_extract_adds_to_an_experts_folder_and_replaces_only_its_names(inputs, tmp_path, capsys):
    out = tmp_path / "experts"
    (out / "mid").mkdir(parents=True)
    (out / "mid" / "adapter_model.safetensors").write_bytes(b"a merged expert")
    args = commands(inputs, tmp_path, out)["extract"]
    assert cli(capsys, *args)[0] == 0  # adds helpful next to mid
    before = snapshot(out)
    code, err = cli(capsys, *args)  # helpful exists now
    assert_refused(code, err, "--out")
    assert "already holds ['helpful']" in err and snapshot(out) == before
    assert cli(capsys, *args, "--overwrite")[0] == 0
    assert (out / "mid" / "adapter_model.safetensors").read_bytes() == b"a merged expert"
    assert sorted(p.name for p in out.iterdir()) == ["helpful", "mid"]  # no temporaries either


def test_extract_into_the_current_folder(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, *commands(inputs, tmp_path, ".")["extract"])[0] == 0
    assert (tmp_path / "helpful" / "adapter_model.safetensors").is_file()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_killed_runs_are_removed_and_reported(inputs, tmp_path, capsys):
    stale = tmp_path / f".bundle.tmp-{dead_pid()}-0123abcd"
    live = tmp_path / f".bundle.tmp-{os.getppid()}-4567cdef"  # our parent runs: its temporary stays
    for folder in (stale, live):
        folder.mkdir()
        (folder / "half.json").write_text("{")
    code, err = cli(capsys, *commands(inputs, tmp_path, tmp_path / "bundle")["build"])
    assert code == 0, err
    assert f"warning: removed {str(stale)!r}, a temporary left by a killed run" in err
    assert not stale.exists() and live.exists() and (tmp_path / "bundle" / "hoe_bundle.json").is_file()


def test_an_old_copy_left_aside_by_a_killed_run_is_put_back_first(inputs, tmp_path, capsys):
    """SIGKILL between the two renames of a replacement leaves the old output aside and no output: the next
    run restores it before deciding anything, so without --overwrite it is refused and kept."""
    out = tmp_path / "bundle"
    assert cli(capsys, *commands(inputs, tmp_path, out)["build"])[0] == 0
    before = snapshot(out)
    out.rename(tmp_path / f".bundle.old-{dead_pid()}-89abcdef")
    code, err = cli(capsys, *commands(inputs, tmp_path, out)["build"])
    assert_refused(code, err, "--out")
    assert "warning: restored" in err and snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_check_output_dir_returns_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output_dir("new/out") == tmp_path / "new" / "out"
    assert not (tmp_path / "new").exists()  # a check creates nothing


def test_a_partial_run_is_kept_for_resume_and_named(inputs, tmp_path, capsys):
    """A training run killed after a checkpoint leaves `.OUT.partial`; a new run without --resume or
    --overwrite refuses to discard it and says how to continue."""
    out = tmp_path / "expert"
    partial = tmp_path / ".expert.partial" / "checkpoints" / "step-000001"
    partial.mkdir(parents=True)
    (partial / "state.json").write_text(json.dumps({"step": 1}))
    code, err = cli(capsys, *commands(inputs, tmp_path, out)["train-expert"])
    assert_refused(code, err, "--out")
    assert "an unfinished run" in err and "Resume it" in err and partial.is_dir() and not out.exists()


@pytest.mark.parametrize("command", ["extract", "merge", "build"])
def test_published_files_are_readable_by_others_as_the_umask_allows(inputs, tmp_path, capsys, command):
    """safetensors creates its files with mode 0o600; a published expert or bundle gets a plain file's mode."""
    out = tmp_path / "out"
    previous = os.umask(0o022)
    try:
        code, err = cli(capsys, *commands(inputs, tmp_path, out)[command])
    finally:
        os.umask(previous)
    assert code == 0, err
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert any(name.endswith(".safetensors") for name in modes)
    assert set(modes.values()) == {0o644}, modes
