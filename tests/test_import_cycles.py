"""No import cycle in ``src/hoe``, function-local imports included (issue 23).

The graph has an edge from module M to every ``hoe`` module M's source imports, wherever the import statement
stands (module level or inside a function): ``from hoe.a import b`` is an edge to ``hoe.a.b`` when that is a
module, else to ``hoe.a``. Imports under ``if TYPE_CHECKING:`` are left out: they never run, and a type named
in an annotation is not a dependency of the code. A package's own ``__init__`` is a module like any other; the implicit
import of a parent package is not an edge (every module would then reach ``hoe/__init__``, which re-exports the
public API on purpose).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def module_names() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "hoe").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``hoe`` modules ``path`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for n in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> nx.DiGraph:
    modules = module_names()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        graph.add_edges_from((name, m) for m in imports(name, path, modules))
    return graph


def test_no_import_cycle():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert not cycles, "import cycles (function-local imports included):\n" + "\n".join(map(str, cycles))


def test_the_walk_sees_function_local_imports_and_not_typing_only_ones(tmp_path):
    """The checker itself: a cycle made only by an import inside a function is found; one made only by an
    import under ``TYPE_CHECKING`` is not."""
    modules = {"hoe.a": tmp_path / "a.py", "hoe.b": tmp_path / "b.py", "hoe.c": tmp_path / "c.py"}
    modules["hoe.a"].write_text("from hoe.b import f\nfrom hoe.c import h\n")
    modules["hoe.b"].write_text("def f():\n    from hoe.a import g\n")
    modules["hoe.c"].write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hoe.a import g\n"
    )
    graph = nx.DiGraph([(n, m) for n, p in modules.items() for m in imports(n, p, modules)])
    assert sorted(graph.edges) == [("hoe.a", "hoe.b"), ("hoe.a", "hoe.c"), ("hoe.b", "hoe.a")]


if __name__ == "__main__":
    for c in nx.strongly_connected_components(import_graph()):
        if len(c) > 1:
            print(sorted(c))
    pytest.main([__file__])
