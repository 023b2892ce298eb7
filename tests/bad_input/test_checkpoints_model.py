"""Bad bundles: a manifest that breaks its schema, a file or a missing folder as `--model`, and a base model
that moved. Each is refused with exit 2 naming the flag (``--model`` for the bundle, ``--base`` for its base
model, which `generate` accepts), never a traceback, and the bundle stays byte-identical.

Base paths: `build` stores a local base folder as an absolute path, so the bundle works from any directory; a
relative path in an older manifest is read relative to the bundle folder, never the current directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hoe import build

from bad_input.helpers import assert_refused, cli, snapshot
from conftest import build_model, save_model

OK_ARGS = ["--preference", "helpful=0.5,harmless=0.5", "--max-new-tokens", "2", "--temperature", "0", "hi"]


def copy_bundle(tiny, tmp_path: Path, edit=None) -> Path:
    """A copy of the bundle whose manifest dict went through ``edit`` (in place)."""
    bundle = Path(shutil.copytree(tiny.bundle, tmp_path / "bundle"))
    if edit is not None:
        edit_manifest(bundle, edit)
    return bundle


def edit_manifest(bundle: Path, edit) -> None:
    path = bundle / "hoe_bundle.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def generate(capsys, bundle: Path, *extra: object) -> tuple[int, str]:
    return cli(capsys, "generate", "--model", bundle, *extra, *OK_ARGS)


def set_anchor(m: dict) -> None:
    m["experts"][1]["anchor"] = {"harmless": -1}


# (edit of the manifest, words: the JSON path of the bad field and what is wrong with it)
MANIFESTS = [
    (lambda m: m["experts"][0].pop("path"), "experts[0].path is missing"),
    (lambda m: m.update(experts="oops"), "experts is invalid: 'oops' is not of type 'array'"),
    (lambda m: m.update(format="hoe-bundle/9"), "format is 'hoe-bundle/9', expected 'hoe-bundle/1'"),
    (lambda m: m.pop("objectives"), "objectives is missing"),
    (lambda m: m.update(objectives=["helpful"]), "objectives is invalid: ['helpful'] is too short"),
    (set_anchor, "experts[1].anchor.harmless is invalid: -1 is less than the minimum of 0"),
    (lambda m: m["experts"][1].update(anchor={"funny": 1.0}), "experts[1].anchor names unknown objectives"),
    (lambda m: m["experts"][1].update(name="helpful"), "experts[1].name repeats the name 'helpful'"),
    (lambda m: m["experts"][0].update(path="experts/nope"), "experts[0].path names 'experts/nope'"),
    (
        lambda m: m.update(routers=[{"name": "r", "anchor": {"helpful": 1}, "experts": ["x"]}]),
        "routers[0].experts",
    ),
]


@pytest.mark.parametrize(("edit", "words"), MANIFESTS)
def test_bad_manifest(tiny, capsys, tmp_path, edit, words):
    bundle = copy_bundle(tiny, tmp_path, edit)
    before = snapshot(bundle)
    code, err = generate(capsys, bundle)
    assert_refused(code, err, "--model")
    assert words in err and "hoe_bundle.json" in err, err
    assert snapshot(bundle) == before


def test_manifest_that_is_not_json(tiny, capsys, tmp_path):
    bundle = copy_bundle(tiny, tmp_path)
    (bundle / "hoe_bundle.json").write_text('{"format": "hoe-bundle/1",')
    code, err = generate(capsys, bundle)
    assert_refused(code, err, "--model")
    assert "hoe_bundle.json' is not valid JSON" in err, err


@pytest.mark.parametrize(
    ("target", "words"),
    [
        (lambda t: t.bundle / "hoe_bundle.json", "is a file, not a bundle folder"),
        (lambda t: t.root / "no-such-bundle", "does not exist"),
        (lambda t: t.helpful, "has no hoe_bundle.json"),
    ],
)
def test_model_that_is_no_bundle_folder(tiny, capsys, target, words):
    code, err = generate(capsys, target(tiny))
    assert_refused(code, err, "--model")
    assert words in err, err


def test_relative_base_is_stored_absolute(tiny, capsys, tmp_path, monkeypatch):
    """`build --base base` from the folder holding `base`, then `generate` from another folder."""
    work = Path(shutil.copytree(tiny.base, tmp_path / "work" / "base")).parent
    monkeypatch.chdir(work)
    experts = ["--expert", f"helpful={tiny.helpful}", "--expert", f"harmless={tiny.harmless}"]
    code, err = cli(capsys, "build", "--base", "base", *experts, "--out", "bundle")
    assert code == 0, err
    manifest = json.loads((work / "bundle" / "hoe_bundle.json").read_text())
    assert manifest["base"] == str((work / "base").resolve())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, err = generate(capsys, work / "bundle")
    assert code == 0, err


def test_moved_base_is_named_and_can_be_passed(tiny, capsys, tmp_path, monkeypatch):
    """The stored base folder is gone: the error names --base (a flag generate has), and --base fixes it."""
    base = Path(shutil.copytree(tiny.base, tmp_path / "base"))
    bundle = build(str(base), {"helpful": tiny.helpful, "harmless": tiny.harmless}, tmp_path / "bundle")
    base.rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    before = snapshot(bundle)
    code, err = generate(capsys, bundle)
    assert_refused(code, err, "--base")
    assert f"the bundle's stored base model {str(base)!r} was not found" in err, err
    assert "Pass the base model" in err, err
    assert snapshot(bundle) == before
    code, err = generate(capsys, bundle, "--base", tmp_path / "moved")
    assert code == 0, err


def test_old_relative_base_is_read_from_the_bundle_folder(tiny, capsys, tmp_path, monkeypatch):
    """A manifest written with a relative base (before bases were stored absolute) resolves it next to the
    bundle; a folder of that name in the current directory (here a GPT-2, the wrong model) is never used."""
    models = tmp_path / "models"
    shutil.copytree(tiny.base, models / "base")
    bundle = copy_bundle(tiny, models, lambda m: m.update(base="base"))
    decoy = tmp_path / "cwd"
    save_model(build_model("gpt2"), decoy / "base")
    monkeypatch.chdir(decoy)
    code, err = generate(capsys, bundle)
    assert_refused(code, err, "--base")
    assert "'base' was not found (looked for it relative to the bundle folder" in err, err
    edit_manifest(bundle, lambda m: m.update(base="../base"))
    code, err = generate(capsys, bundle)
    assert code == 0, err
