"""The floor plan holds: the map names every module once, rooms stay small, the README's
layout table lists the tree's folders (issue 21's acceptance, checked on every run)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("gateway", "wire", "backends", "trainers", "dualserve", "loadtest", "benchmarks", "deploy")
MAX_MODULES_PER_FOLDER = 15
MAX_TOP_LEVEL_GATEWAY_MODULES = 8


def _modules(root: str) -> list[Path]:
    """Every first-party .py file under `root`, generated protobuf code excluded."""
    return sorted(p for p in (REPO / root).rglob("*.py") if "_proto" not in p.parts)


def _rooms_table() -> list[str]:
    """The rows of docs/architecture.md's rooms table (the table under "## The rooms")."""
    text = (REPO / "docs/architecture.md").read_text(encoding="utf-8")
    section = text.split("## The rooms", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]


def test_every_gateway_module_is_named_in_exactly_one_room() -> None:
    rows = _rooms_table()
    assert len(rows) >= 9, "the rooms table lost its rows"
    for module in _modules("gateway"):
        name = f"`{module.relative_to(REPO).as_posix()}`"
        holders = [row.split("|")[1].strip() for row in rows if name in row]
        assert len(holders) == 1, f"{name} is named in {len(holders)} rooms: {holders}"


def test_the_rooms_table_names_no_module_that_does_not_exist() -> None:
    named = set()
    for row in _rooms_table():
        named |= set(re.findall(r"`(gateway/[\w/]+\.py)`", row))
    missing = sorted(p for p in named if not (REPO / p).is_file())
    assert not missing, f"docs/architecture.md names modules that are gone: {missing}"


def test_gateway_top_level_keeps_only_the_composition_root_and_facade() -> None:
    top = sorted(p.name for p in (REPO / "gateway").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_GATEWAY_MODULES, top


def test_no_folder_holds_more_than_fifteen_modules() -> None:
    folders: dict[Path, int] = {}
    for root in (*PRODUCT, "tests"):
        for module in _modules(root):
            folders[module.parent] = folders.get(module.parent, 0) + 1
    crowded = {str(f.relative_to(REPO)): n for f, n in folders.items() if n > MAX_MODULES_PER_FOLDER}
    assert not crowded, f"folders over {MAX_MODULES_PER_FOLDER} modules: {crowded}"


def test_the_readme_layout_table_lists_every_top_level_folder() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## What is here", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w.-]+)/` \|", section, flags=re.M))
    tree = {p.name for p in REPO.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    tree |= {name for name in ("deploy", "docs", "model_store", "scripts", "tests") if (REPO / name).is_dir()}
    assert tree <= listed, f"folders missing from the README's layout table: {sorted(tree - listed)}"
    assert listed <= tree | {"docs"}, f"the README lists folders that are gone: {sorted(listed - tree)}"
