"""docs/bundle-format.md against what the code writes: a tiny bundle and router folder are built, and the page's
file tables, trees, JSON key tables, tensor tables and quoted error messages must match them both ways.

Page conventions this test relies on: a section ``### `FILE` `` holds one table whose first column is a key
in backticks (nested keys dotted, ``[]`` for array items, ``<placeholder>`` for any name); tensor tables give
the name (``<module>`` for any module), the shape in symbols and the dtype; ``### Bundle files`` and
``### Router folder files`` list paths; the fenced trees start with ``bundle/`` and ``router/``.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from hoe import build, extract, merge, save_router
from hoe.bundle.folder import MANIFEST_SCHEMA, read_manifest
from hoe.bundle.router_folder import read_router
from hoe.errors import HoEError
from hoe.io.adapters import read_adapter
from hoe.model.hoe_model import HoEModel
from hoe.training import loop
from hoe.training.router import card as router_card
from hoe.training.run_folder import RunFolder

from conftest import build_model, make_peft_adapter, save_model

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "bundle-format.md"
TRAIN_ROUTER_ONLY = "hoe train-router"  # the marker of bundle files only a router training run writes


# ---------------------------------------------------------------- the page


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def sections() -> dict[str, str]:
    """Heading text (without #, backticks and spaces around) -> the text up to the next heading."""
    out, name, lines = {}, None, []
    for line in page().splitlines():
        if line.startswith("#") and not line.startswith("#!"):
            if name is not None:
                out[name] = "\n".join(lines)
            name, lines = line.lstrip("#").strip().strip("`"), []
        else:
            lines.append(line)
    if name is not None:
        out[name] = "\n".join(lines)
    return out


def table(section: str) -> list[list[str]]:
    """Body rows of the section's first table, split into cells (``\\|`` is a literal bar)."""
    rows = [ln for ln in sections()[section].splitlines() if ln.startswith("|")]
    assert len(rows) > 2, f"no table under the heading {section!r}"
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", r.strip())[1:-1]] for r in rows]
    return cells[2:]  # header and separator


def first_code(cell: str) -> str:
    m = re.match(r"`([^`]+)`", cell)
    assert m, f"first column {cell!r} is not a `key`"
    return m.group(1)


def keys(section: str) -> dict[str, list[str]]:
    return {first_code(r[0]): r for r in table(section)}


def tree(root: str) -> set[str]:
    """Leaf paths of the fenced tree whose first line is ``root`` (directories keep their ``/``)."""
    blocks = re.findall(r"```\n(.*?)```", page(), flags=re.S)
    block = next(b for b in blocks if b.splitlines()[0].strip() == root)
    stack: list[str] = []
    entries: list[tuple[int, str]] = []
    for line in block.splitlines()[1:]:
        start = next(i for i, c in enumerate(line) if c not in " │├└─")
        name = line[start:].split("  ")[0].strip()
        depth = start // 4
        stack = stack[: depth - 1] + [name]
        entries.append((depth, "".join(stack)))
    paths = [p for _, p in entries]
    return {p for p in paths if not any(q != p and q.startswith(p) and p.endswith("/") for q in paths)}


# ---------------------------------------------------------------- what the code writes


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A bundle of two extracted experts, one merged expert and one router; a router folder saved from it
    (with a training record, as a train-router bundle has)."""
    root = tmp_path_factory.mktemp("bundle_format")
    base = str(save_model(build_model("llama"), root / "base"))
    adapters = {
        "helpful": make_peft_adapter(root / "a", seed=1),
        "harmless": make_peft_adapter(root / "b", seed=2),
    }
    experts = extract(base, adapters, rank=2, out=root / "experts", progress=False)
    merged = merge(
        experts, {"helpful": 0.5, "harmless": 0.5}, rank=2, out=root / "experts" / "mid", progress=False
    )
    bundle = build(base, experts | {"mid": merged}, root / "bundle", routers={"r": "0.3,0.7"})
    trained = root / "trained"
    shutil.copytree(bundle, trained)
    (trained / router_card.ROUTER_RECORD).write_text(json.dumps({"router": "r"}))
    router = save_router(trained, "r", root / "router")
    return root, bundle, router


def files(folder: Path, names: list[str]) -> set[str]:
    """Files under ``folder``, an expert's folder name written ``<name>``."""
    out = set()
    for p in folder.rglob("*"):
        if p.is_file():
            rel = p.relative_to(folder).as_posix()
            out.add(re.sub(rf"^experts/({'|'.join(map(re.escape, names))})/", "experts/<name>/", rel))
    return out


def json_paths(obj, prefix: tuple = ()) -> set[tuple[str, ...]]:
    """Every key path of a JSON value: dict keys as segments, ``[]`` for the items of an array of objects."""
    out: set[tuple[str, ...]] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add((*prefix, k))
            out |= json_paths(v, (*prefix, k))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        for x in obj:
            out |= json_paths(x, (*prefix, "[]"))
    return out


def pattern(key: str) -> tuple[str, ...]:
    """``routers[].fingerprint.<expert>.rank`` -> ("routers", "[]", "fingerprint", "<expert>", "rank")."""
    return tuple(key.replace("[]", ".[]").split("."))


def matches(pat: tuple[str, ...], path: tuple[str, ...]) -> bool:
    return len(pat) == len(path) and all(
        p == s or (p.startswith("<") and p.endswith(">") and s != "[]") for p, s in zip(pat, path)
    )


def check_keys(section: str, actual: set[tuple[str, ...]], both_ways: bool = True) -> None:
    documented = [pattern(k) for k in keys(section)]
    undocumented = sorted(".".join(a) for a in actual if not any(matches(p, a) for p in documented))
    unwritten = sorted(".".join(p) for p in documented if not any(matches(p, a) for a in actual))
    assert not (both_ways and undocumented), f"{section}: written but not documented: {undocumented}"
    assert not unwritten, f"{section}: documented but not written: {unwritten}"


# ---------------------------------------------------------------- files and trees


def test_bundle_files_table_and_tree_match_the_written_bundle(made):
    _, bundle, _ = made
    rows = keys("Bundle files")
    names = [e["name"] for e in read_manifest(bundle)["experts"]]
    written = files(bundle, names)
    training_only = {k for k, r in rows.items() if TRAIN_ROUTER_ONLY in " ".join(r[1:])}
    assert written == set(rows) - training_only
    checkpoints = RunFolder(Path("o"), Path("w"), None).checkpoints.name + "/"
    assert training_only == {router_card.ROUTER_RECORD, loop.LOG, checkpoints}
    assert tree("bundle/") == set(rows)


def test_router_folder_files_table_and_tree_match_a_saved_router(made):
    _, _, router = made
    rows = keys("Router folder files")
    assert files(router, []) == set(rows)
    assert tree("router/") == set(rows)


# ---------------------------------------------------------------- JSON keys


def test_manifest_keys(made):
    _, bundle, _ = made
    manifest = json.loads((bundle / "hoe_bundle.json").read_text())
    check_keys("hoe_bundle.json", json_paths(manifest))


def test_manifest_schema_properties_are_documented_with_their_required_flag(made):
    rows = keys("hoe_bundle.json")
    items = {
        "": MANIFEST_SCHEMA,
        "experts[].": MANIFEST_SCHEMA["properties"]["experts"]["items"],
        "routers[].": MANIFEST_SCHEMA["properties"]["routers"]["items"],
    }
    for prefix, schema in items.items():
        for prop in schema["properties"]:
            row = rows[prefix + prop]  # KeyError: a schema property the page lacks
            required = row[2].startswith("yes")
            assert required == (prop in schema.get("required", [])), f"required flag of {prefix + prop}"


def test_expert_record_keys_of_single_and_merged_experts(made):
    _, bundle, _ = made
    paths: set[tuple[str, ...]] = set()
    kinds = set()
    for folder in (bundle / "experts").iterdir():
        record = json.loads((folder / "hoe_expert.json").read_text())
        kinds.add(record["kind"])
        paths |= json_paths(record)
    assert kinds == {"single", "merged"}
    check_keys("experts/<name>/hoe_expert.json", paths)


def test_adapter_config_keys_that_hoe_writes_and_reads_are_there(made):
    _, bundle, _ = made
    config = json.loads((bundle / "experts" / "helpful" / "adapter_config.json").read_text())
    # PEFT writes many more keys (they depend on its version): only the documented ones must exist
    check_keys("experts/<name>/adapter_config.json", {(k,) for k in config}, both_ways=False)


def test_router_record_keys(made):
    _, _, router = made
    check_keys("hoe_router.json", json_paths(json.loads((router / "hoe_router.json").read_text())))


def test_training_record_keys_match_the_code():
    source = (ROOT / "src" / "hoe" / "training" / "router" / "card.py").read_text()
    fn = next(
        n
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.FunctionDef) and n.name == "training_record"
    )
    returned = next(n.value for n in ast.walk(fn) if isinstance(n, ast.Return))
    assert isinstance(returned, ast.Dict)
    assert {k.value for k in returned.keys} == set(keys("hoe_router_training.json"))


# ---------------------------------------------------------------- tensors


def check_tensors(section: str, file: Path, sizes, metadata: dict | None = None) -> None:
    """Every tensor of ``file`` matches one documented name, with the documented shape and dtype; the file's
    metadata is ``metadata`` (default ``{"format": "pt"}``)."""
    rows = keys(section)
    regexes = {
        k: re.compile("^" + re.escape(k).replace(re.escape("<module>"), "(?P<module>.+)") + "$") for k in rows
    }
    seen = set()
    with safe_open(str(file), "pt") as f:
        assert f.metadata() == (metadata or {"format": "pt"})
        for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            hits = [(k, m) for k, rx in regexes.items() if (m := rx.match(name))]
            assert len(hits) == 1, f"{section}: {name} matches {len(hits)} documented names"
            key, m = hits[0]
            seen.add(key)
            t = f.get_tensor(name)
            symbols = [s.strip() for s in rows[key][1].strip("`()").split(",") if s.strip()]
            env = sizes(m.group("module"))
            assert tuple(t.shape) == tuple(env[s] for s in symbols), f"{section}: {name} {tuple(t.shape)}"
            dtype = rows[key][2]
            if dtype.startswith("as `"):  # "as `lora_A`": the dtype of another row
                dtype = next(r[2] for k, r in rows.items() if first_code(dtype[3:]) in k)
            assert str(t.dtype).removeprefix("torch.") in dtype, f"{section}: dtype of {name}"
    assert seen == set(rows), f"{section}: documented but not written: {set(rows) - seen}"


def test_tensor_names_shapes_and_dtypes(made):
    _, bundle, router = made
    manifest = read_manifest(bundle)
    weights = read_adapter(bundle / "experts" / "helpful")

    def sizes(module: str) -> dict[str, int]:
        w = weights[module]
        return {
            "R": len(manifest["routers"]),
            "E": len(manifest["experts"]),
            "in": w.A.shape[1],
            "out": w.B.shape[0],
            "r": w.rank,
        }

    check_tensors(
        "experts/<name>/adapter_model.safetensors",
        bundle / "experts/helpful/adapter_model.safetensors",
        sizes,
    )
    names = [e["name"] for e in json.loads((bundle / "hoe_bundle.json").read_text())["experts"]]
    order = {"format": "pt", "experts": json.dumps(names)}  # the E axis, as the page says
    check_tensors("routers.safetensors", bundle / "routers.safetensors", sizes, order)
    check_tensors("router.safetensors", router / "router.safetensors", sizes)


# ---------------------------------------------------------------- quoted errors


def _broken(bundle: Path, folder: Path, edit) -> Path:
    shutil.copytree(bundle, folder)
    manifest = json.loads((folder / "hoe_bundle.json").read_text())
    edit(folder, manifest)
    (folder / "hoe_bundle.json").write_text(json.dumps(manifest))
    return folder


def _message(fn, folder: Path, placeholder: str = "<bundle>") -> str:
    with pytest.raises(HoEError) as info:
        fn(folder)
    return str(info.value).replace(str(folder), placeholder)


EDITS = {
    "format": lambda d, m: m.update(format="hoe-bundle/2"),
    "no-path": lambda d, m: m["experts"][0].pop("path"),
    "not-a-folder": lambda d, m: m["experts"][0].update(path="experts/nope"),
    "objective": lambda d, m: m["experts"][0].update(anchor={"funny": 1}),
    "unlisted": lambda d, m: m["routers"][0].update(experts=["helpful", "x"]),
    "relative-base": lambda d, m: m.update(base="nowhere"),
    "no-routers-file": lambda d, m: (d / "routers.safetensors").unlink(),
    "reordered": lambda d, m: m["experts"].reverse(),
}


@pytest.mark.parametrize("case", EDITS)
def test_quoted_bundle_errors_are_what_loading_says(made, tmp_path, case):
    _, bundle, _ = made
    folder = _broken(bundle, tmp_path / "b", EDITS[case])
    assert _message(lambda f: HoEModel.from_pretrained(f, dtype=torch.float32), folder) in page()


def test_quoted_router_folder_error_is_what_reading_says(made, tmp_path):
    _, _, router = made
    folder = tmp_path / "r"
    shutil.copytree(router, folder)
    record = json.loads((folder / "hoe_router.json").read_text())
    (folder / "hoe_router.json").write_text(json.dumps(record | {"format": "hoe-router/0"}))
    assert _message(read_router, folder, "<router>") in page()


def test_quoted_fingerprint_error_has_the_words_loading_uses(made, tmp_path):
    _, bundle, _ = made

    def edit(d, m):
        fingerprints = m["routers"][0]["fingerprint"]
        first = fingerprints[next(iter(fingerprints))]
        first["sha256"], first["sketch"]["norm2"] = "0" * 64, 2 * first["sketch"]["norm2"]  # another expert

    message = _message(HoEModel.from_pretrained, _broken(bundle, tmp_path / "b", edit))
    quoted = next(ln for ln in page().splitlines() if "was trained to mix the experts" in ln)

    def shape(text: str) -> str:  # names, paths and fingerprints differ; the wording must not
        text = re.sub(r"'[^']*'", "'_'", text)
        text = re.sub(r"[\w.-]+ \(rank \d+, sha256 [0-9a-f]{8}\)", "E", text)
        return re.sub(r"E(, E)+", "E", text)

    assert shape(message) == shape(quoted)
