"""Rooms that must not import each other (docs/architecture.md): routing and experiments
meet only in the composition root, `gateway.app.build_context`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _imports(package: str) -> dict[str, set[str]]:
    """Every gateway module imported by each file of `package` (at any depth)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [("gateway.routing", "gateway.experiments"), ("gateway.experiments", "gateway.routing")],
)
def test_rooms_do_not_import_each_other(room: str, forbidden: str) -> None:
    offending = {
        path: sorted(n for n in names if n == forbidden or n.startswith(forbidden + "."))
        for path, names in _imports(room).items()
    }
    assert {path: names for path, names in offending.items() if names} == {}
    assert offending  # the room's files were read


def test_only_the_policy_store_writes_routing_state() -> None:
    """No module outside the store assigns a policy into the router or the store."""
    for path, text in ((p, p.read_text()) for p in (ROOT / "gateway").rglob("*.py")):
        assert "set_policy(" not in text, path
        assert ".policies[" not in text, path
