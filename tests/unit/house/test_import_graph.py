"""No import circle between files anywhere in the repository.

Every `.py` file (outside `.venv`, generated `_proto` packages and other hidden or build
folders) is parsed with `ast`; each `import x.y` and `from x.y import z` that names a
module of this repository is an edge (`from pkg import name` counts as importing
`pkg.name` when that is a module of ours, else `pkg`'s `__init__`). Imports under
`if TYPE_CHECKING:` are left out: they never run. A cycle is a strongly connected
component of more than one file, or a file importing itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SKIP = {".venv", "_proto", "node_modules", "build", "dist", "__pycache__"}


def python_files(root: Path = ROOT) -> list[Path]:
    """Every .py file of the repository, hidden and generated folders left out."""
    return sorted(
        p
        for p in root.rglob("*.py")
        if not any(part in SKIP or part.startswith(".") for part in p.relative_to(root).parts)
    )


def module_name(path: Path, root: Path = ROOT) -> str:
    """`loadtest/report/build.py` -> `loadtest.report.build`; a package's `__init__` -> the
    package's name."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run: not those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path, modules: set[str], root: Path = ROOT) -> set[str]:
    """The modules of `modules` that `path` imports at run time."""
    here = module_name(path, root)
    found: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            module = _resolve(node, here, path.name == "__init__.py")
            names = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in modules]
            names = names or [module]
        found.update(_owner(name, modules) for name in names)
    found.discard("")
    return found


def _owner(name: str, modules: set[str]) -> str:
    """The longest module of ours that `name` is or lies in, or ""."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return ""


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = python_files(root)
    modules = {module_name(p, root) for p in files}
    return {module_name(p, root): imports_of(p, modules, root) for p in files}


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    """Every module reached from `start` by one or more imports."""
    seen: set[str] = set()
    todo = list(edges.get(start, ()))
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo.extend(edges.get(v, ()))
    return seen


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: each group of modules that reach one another (a strongly
    connected component), and any module that reaches itself, sorted."""
    reach = {v: reachable(edges, v) for v in edges}
    groups = {
        tuple(sorted(w for w in reach[v] if v in reach.get(w, set())))
        for v in edges
        if v in reach[v]
    }
    return sorted(list(g) for g in groups)


def test_cycle_finder_on_a_known_graph() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert sorted(cycles(edges)) == [["a", "b", "c"], ["e"]]


def test_edges_resolve_relative_and_from_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\nfrom typing import TYPE_CHECKING\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import x\n"
        "def f():\n    from pkg import c\n"
    )
    (pkg / "c.py").write_text("import pkg.a\n")
    edges = graph(tmp_path)
    assert edges["pkg.a"] == {"pkg.b"} and edges["pkg.b"] == {"pkg.c"}
    assert edges["pkg.c"] == {"pkg.a"}
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_no_import_cycle_between_files() -> None:
    edges = graph()
    assert len(edges) > 100  # the repository was read
    assert cycles(edges) == []
