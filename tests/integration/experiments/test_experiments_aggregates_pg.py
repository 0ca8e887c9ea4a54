"""The aggregate analysis on PostgreSQL: its SQL gives the row path's analysis, as on SQLite.

`postgres_url` (tests/integration/conftest.py) is a throwaway cluster; if PostgreSQL is
missing this fails, it never skips. Each case gets a database of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gateway.control.database import open_postgres
from gateway.experiments.log import aggregates
from gateway.experiments.log.store import SqlLogStore
from tests.unit.stats.test_experiments_aggregates import (
    CONTROL,
    assert_same,
    both_paths,
    fill,
    purge_case,
)
from tests.unit.stats.test_experiments_increments import (
    arrive_in_pieces,
    rows_after_upto_wait_for_the_next_look,
)


@pytest.mark.parametrize(
    ("seed", "units", "kwargs"),
    [
        (0, 300, {}),
        (1, 40, {"keyless": 0.5}),
        (2, 400, {"third_arm": True}),
        (3, 200, {"roles": False}),
    ],
)
def test_aggregates_on_postgres_give_the_row_paths_analysis(
    pg_store: SqlLogStore, seed: int, units: int, kwargs: Any
) -> None:
    fill(pg_store, seed, units, **kwargs)
    got, want = both_paths(pg_store)
    assert_same(got, want)
    assert want["arms"][CONTROL]["requests"] > 0


def test_aggregates_since_a_time_on_postgres(pg_store: SqlLogStore) -> None:
    fill(pg_store, 5, 300)
    got, want = both_paths(pg_store, since=120.0)
    assert_same(got, want)


def test_the_latency_sample_is_the_same_units_on_postgres(pg_store: SqlLogStore) -> None:
    fill(pg_store, 6, 2000, keyless=0.0)
    reader = aggregates.Aggregator(pg_store._db, "exp")
    sample = reader.latency_sample(CONTROL, rows=500)
    assert 0 < sample.fraction < 1
    threshold = f"{int(sample.fraction * 16**8):08x}"
    assert all(str(unit)[:8] < threshold for unit in set(sample.unit))
    whole = reader.latency_sample(CONTROL)
    expected = np.array([str(u)[:8] < threshold for u in whole.unit])
    assert np.array_equal(sample.latency_ms, whole.latency_ms[expected])


def test_retention_purges_in_chunks_on_postgres(pg_store: SqlLogStore) -> None:
    purge_case(pg_store)


def test_the_analysts_session_runs_without_jit_and_with_its_parallel_workers(
    postgres_url: str,
) -> None:
    from gateway.experiments.analyst import analysis_session

    db = open_postgres(postgres_url, analysis_session(2))
    try:
        shown = {
            name: db.fetch(f"SHOW {name}")[0][0]
            for name in ("jit", "max_parallel_workers_per_gather", "statement_timeout")
        }
    finally:
        db.close()
    assert shown == {
        "jit": "off",
        "max_parallel_workers_per_gather": "2",
        "statement_timeout": "1min",
    }


@pytest.mark.parametrize(("seed", "units", "pieces"), [(0, 300, 5), (2, 300, 4)])
def test_incremental_looks_on_postgres_equal_the_whole_steps_aggregates(
    pg_store: SqlLogStore, seed: int, units: int, pieces: int
) -> None:
    """The rollout controller's looks, read by arrival, on PostgreSQL's clock and SQL."""
    arrive_in_pieces(pg_store, seed, units, pieces, third_arm=seed == 2)


def test_rows_stamped_after_a_looks_upto_wait_for_the_next_look_on_postgres(
    pg_store: SqlLogStore,
) -> None:
    rows_after_upto_wait_for_the_next_look(pg_store)
