"""Rooms that must not import each other (docs/architecture.md): routing and experiments
meet only in the composition root, `gateway.app.build_context`; the vocabulary
(`gateway.core`) imports nothing else of the gateway; the edge imports no protocol; the
developer benchmarks are imported by nothing of the product."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PRODUCT = ("gateway", "loadtest", "dualserve", "backends", "trainers", "wire")


def _imports(package: str) -> dict[str, set[str]]:
    """Every module imported by each file of `package` (at any depth, lazy imports
    included): `from a.b import c` counts as importing `a.b` and `a.b.c`; relative
    imports are made absolute."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = _absolute(node, path)
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module a `from ... import` names, relative ones resolved against `path`."""
    if node.level == 0:
        return node.module or ""
    package = list(path.relative_to(ROOT).parent.parts)
    parts = package[: len(package) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _offending(room: str, forbidden: str) -> dict[str, list[str]]:
    imports = _imports(room)
    assert imports, f"no file read under {room}"
    offending = {
        path: sorted(n for n in names if _within(n, forbidden)) for path, names in imports.items()
    }
    return {path: names for path, names in offending.items() if names}


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        ("gateway.routing", "gateway.experiments"),
        ("gateway.experiments", "gateway.routing"),
        ("gateway.edge", "gateway.protocols"),
        *((product, "benchmarks") for product in PRODUCT),
    ],
)
def test_rooms_do_not_import_each_other(room: str, forbidden: str) -> None:
    assert _offending(room, forbidden) == {}


def test_core_imports_nothing_else_of_the_gateway() -> None:
    """`gateway.core` is the vocabulary every room speaks: it imports only itself."""
    outside = {
        path: sorted(
            n
            for n in names
            if _within(n, "gateway") and n != "gateway" and not _within(n, "gateway.core")
        )
        for path, names in _imports("gateway.core").items()
    }
    assert {path: names for path, names in outside.items() if names} == {}
    assert outside  # the room's files were read


def test_the_rules_see_what_they_forbid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser catches the forms an import can take: plain, from, lazy, relative."""
    room = tmp_path / "gateway" / "edge"
    room.mkdir(parents=True)
    (room / "a.py").write_text("import gateway.protocols.rest.http\n")
    (room / "b.py").write_text("from gateway import protocols\n")
    (room / "c.py").write_text("def f():\n    from ..protocols.grpc import common\n")
    (room / "d.py").write_text("from gateway.core.errors import GatewayError\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert sorted(_offending("gateway.edge", "gateway.protocols")) == [
        "gateway/edge/a.py",
        "gateway/edge/b.py",
        "gateway/edge/c.py",
    ]


def test_only_the_policy_store_writes_routing_state() -> None:
    """No module outside the store assigns a policy into the router or the store."""
    for path, text in ((p, p.read_text()) for p in (ROOT / "gateway").rglob("*.py")):
        assert "set_policy(" not in text, path
        assert ".policies[" not in text, path
