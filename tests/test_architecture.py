"""The shape of the package (docs/DESIGN.md): no import circle between any two modules of
gpsearch, counting imports inside functions too (the layers contract in pyproject.toml, checked
by ``lint-imports`` in CI, forbids upward imports between packages; this test forbids circles
inside a package as well), and every package says in its docstring what it holds."""

import ast
import importlib
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "gpsearch"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                # a package's __init__ is not an edge target when a submodule is meant
                if t and t != mod and t != "gpsearch":
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_gpsearch():
    assert cycles(import_graph()) == []


def test_every_package_documents_what_it_holds():
    for init in PKG.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init} has no docstring saying what the package holds"


def test_package_root_holds_only_api_cli_and_bottom_layer():
    root = sorted(p.stem for p in PKG.glob("*.py"))
    assert root == ["__init__", "api", "cli", "config", "errors", "io", "plots"]


def test_public_api_is_plain_functions_listed_in_all():
    gpsearch = importlib.import_module("gpsearch")
    for name in ("prune", "search", "compare", "allocate", "robustness", "load_tree"):
        assert name in gpsearch.__all__
        fn = getattr(gpsearch, name)
        assert callable(fn) and fn.__doc__, name
        assert type(fn).__name__ == "function", name
