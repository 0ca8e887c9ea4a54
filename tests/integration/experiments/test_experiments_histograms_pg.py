"""The report's histograms on PostgreSQL: its SQL bins as numpy does, as on SQLite.

`postgres_url` (tests/integration/conftest.py) is a throwaway cluster; if PostgreSQL is
missing this fails, it never skips. Each case gets a database of its own. (PostgreSQL's
`CAST(double AS INTEGER)` rounds where SQLite's truncates: the edge comparisons correct
either guess.)
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.experiments.log.store import SqlLogStore
from tests.unit.stats.test_experiments_aggregates import fill
from tests.unit.stats.test_experiments_histograms import (
    ARMS,
    check_against_numpy,
    check_edge_values,
    check_equal_latencies,
    edge_values,
    equal_latencies,
)


@pytest.mark.parametrize(("seed", "units", "kwargs"), [(0, 300, {}), (2, 600, {"third_arm": True})])
def test_histograms_on_postgres_equal_numpys_over_the_rows(
    pg_store: SqlLogStore, seed: int, units: int, kwargs: Any
) -> None:
    fill(pg_store, seed, units, **kwargs)
    check_against_numpy(pg_store, ARMS)


def test_values_on_the_edges_on_postgres(pg_store: SqlLogStore) -> None:
    edge_values(pg_store)
    check_edge_values(pg_store)


def test_equal_latencies_on_postgres(pg_store: SqlLogStore) -> None:
    equal_latencies(pg_store)
    check_equal_latencies(pg_store)


def test_an_experiment_without_rows_on_postgres(pg_store: SqlLogStore) -> None:
    got = pg_store.histograms("exp", ARMS)
    assert (got.rows, got.traffic, got.latency) == (0, None, None)
