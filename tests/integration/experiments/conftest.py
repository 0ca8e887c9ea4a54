"""Fixtures of the experiments' PostgreSQL tests: a log store on a database of its own.

`postgres_url` (tests/integration/conftest.py) is a throwaway cluster; if PostgreSQL is
missing the tests fail, they never skip.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest

from gateway.control.database import LOG_TIMEOUTS, open_postgres
from gateway.experiments.log.store import SqlLogStore

_NAMES = itertools.count()


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[SqlLogStore]:
    """A `SqlLogStore` on a fresh database of the throwaway cluster, closed after."""
    name = f"log_store_{next(_NAMES)}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    store = SqlLogStore(open_postgres(postgres_url.rsplit("/", 1)[0] + f"/{name}", LOG_TIMEOUTS))
    try:
        yield store
    finally:
        store.close()
