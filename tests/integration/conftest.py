"""A real stack per test module: both backends and the gateway from `dualserve.stack`;
a throwaway PostgreSQL cluster for the modules that need one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from backends.process import free_port
from dualserve.stack import StackPaths, down, up


@contextmanager
def running_stack(
    store: Path,
    run_dir: Path,
    gateway_workers: int = 1,
    version_labels: Mapping[str, Mapping[str, int]] | None = None,
    capture: Mapping[str, float] | None = None,
) -> Iterator[dict[str, Any]]:
    """`up` on free loopback ports (the gateway with `gateway_workers` processes), always
    `down` after: the state (its parts by name, and typed as `state`) plus `paths`, `store`
    and the admin `Authorization` header."""
    paths = StackPaths(store, run_dir)
    try:
        state = up(
            paths, gateway_workers=gateway_workers, version_labels=version_labels, capture=capture
        )
        token = state.gateway.admin_token_file.read_text().strip()
        yield {
            **state.model_dump(mode="json"),  # the parts' addresses, as state.json has them
            "state": state,  # the same, typed (`dualserve.run_state.RunState`)
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


def _pg_bin() -> Path:
    roots = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not roots:
        pytest.fail("PostgreSQL is not installed (scripts/setup.sh installs Debian's postgresql)")
    return roots[-1].parent


def _as_db_user(command: list[str]) -> list[str]:
    # initdb refuses to run as root: use the package's `postgres` user then.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(*command: str) -> None:
    done = subprocess.run(_as_db_user(list(command)), capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed: {done.stderr or done.stdout}")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway cluster (`throwaway_postgres`), always stopped after the module. If
    PostgreSQL is missing this fails; it never skips."""
    with throwaway_postgres() as url:
        yield url


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A cluster from Debian's `postgresql` package (initdb + pg_ctl, as the `postgres`
    user when run as root) on a free loopback port in a temp dir, stopped and removed on
    exit; its URL (user `postgres`, database `postgres`, trust auth). Also used by
    `benchmarks.experiments.analysis_stack`.

    Raises:
        pytest.fail.Exception: PostgreSQL is missing, or initdb / pg_ctl failed.
    """
    # Not under pytest's tmp dir: the `postgres` user cannot enter root's 0700 folders.
    bin_dir, root = _pg_bin(), Path(tempfile.mkdtemp(prefix="dualserve-pg-"))
    data, port = root / "data", free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    try:
        _run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root}"
        pg_ctl = str(bin_dir / "pg_ctl")
        _run(pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            _run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
