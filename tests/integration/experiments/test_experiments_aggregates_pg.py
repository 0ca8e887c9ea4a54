"""The aggregate analysis on PostgreSQL: its SQL gives the row path's analysis, as on SQLite.

`postgres_url` (tests/integration/conftest.py) is a throwaway cluster; if PostgreSQL is
missing this fails, it never skips. Each case gets a database of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest

from gateway.control.database import LOG_TIMEOUTS, open_postgres
from gateway.experiments.log import aggregates
from gateway.experiments.log.aggregates import Aggregator
from gateway.experiments.log.increments import IncrementalLooks
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
    db_now,
    later_than,
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


_ICU = itertools.count()


@pytest.fixture
def icu_store(postgres_url: str) -> Iterator[SqlLogStore]:
    """A log on a database whose collation is a language's (ICU en-US), not byte order."""
    name = f"icu_log_{next(_ICU)}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        )
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    store = SqlLogStore(open_postgres(url, LOG_TIMEOUTS), look_lag_s=0.0)
    try:
        yield store
    finally:
        store.close()


def _row(request_id: str, ts: float, arm: str = "a", key: str | None = None) -> tuple[Any, ...]:
    return (request_id, "serve", ts, "exp", "m", arm, 1, key, 5.0, 200, 1, None, None, 0, "tf")


def test_the_sample_and_its_threshold_compare_bytes_whatever_the_collation(
    icu_store: SqlLogStore,
) -> None:
    """Client request ids with capitals (`X-Request-Id`): 'Zz-1' is below the threshold
    'c0000000' byte by byte, above it in en-US. Both paths compare bytes (found by a
    helper's fuzzing: the incremental look kept it, the SQL dropped it)."""
    looks = IncrementalLooks(icu_store._db, sample_rows=3)
    icu_store.write_batch([_row("Zz-1", 1.0), _row("00-2", 2.0), _row("01-3", 3.0)])
    first = looks.collect("exp", ["a"], (), None, upto=db_now(icu_store))
    later_than(icu_store, first.upto or 0.0)
    icu_store.write_batch([_row("02-4", 4.0)])
    got = looks.collect("exp", ["a"], (), None, upto=db_now(icu_store)).latency["a"]
    want = Aggregator(icu_store._db, "exp").latency_sample("a", rows=3)
    assert got.fraction == want.fraction == 0.75
    assert list(got.unit) == list(want.unit)
    assert list(want.unit) == ["request:Zz-1", "request:00-2", "request:01-3", "request:02-4"]


def test_the_first_served_tie_compares_request_ids_bytewise_whatever_the_collation(
    icu_store: SqlLogStore,
) -> None:
    """One unit, two rows at one ts read by two looks: 'B-1' (arm a) sorts first by byte,
    'a-2' (arm b) in en-US; arm a served the unit first on both paths."""
    looks = IncrementalLooks(icu_store._db)
    icu_store.write_batch([_row("B-1", 5.0, "a", "unit1")])
    first = looks.collect("exp", ["a", "b"], (), None, upto=db_now(icu_store))
    later_than(icu_store, first.upto or 0.0)
    icu_store.write_batch([_row("a-2", 5.0, "b", "unit1")])
    got = looks.collect("exp", ["a", "b"], (), None, upto=db_now(icu_store)).first_served
    want = Aggregator(icu_store._db, "exp").first_served(["a", "b"], ())
    assert got == want == {"a": [1], "b": [0]}
