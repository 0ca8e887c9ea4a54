"""A real stack per test module: both backends and the gateway from `dualserve.stack`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dualserve.stack import StackPaths, down, up


@contextmanager
def running_stack(
    store: Path, run_dir: Path, version_labels: Mapping[str, Mapping[str, int]] | None = None
) -> Iterator[dict[str, Any]]:
    """`up` on free loopback ports, always `down` after: the state plus `paths`, `store`
    and the admin `Authorization` header."""
    paths = StackPaths(store, run_dir)
    try:
        state = up(paths, version_labels=version_labels)
        token = Path(state["gateway"]["admin_token_file"]).read_text().strip()
        yield {
            **state,
            "paths": paths,
            "store": store,
            "admin": {"Authorization": f"Bearer {token}"},
        }
    finally:
        down(paths)


@pytest.fixture(scope="module")
def stack(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A stack of this module's own: tests here may change policies or stop a backend."""
    with running_stack(trained_store, tmp_path_factory.mktemp("stack")) as state:
        yield state
