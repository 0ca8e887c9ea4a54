"""The rollout controller's incremental looks equal the whole step's aggregates (the oracle).

A seeded log (`seeded_log`) arrives in pieces, in shuffled order: rows whose request ts
is earlier than rows already read, labels before their rows and long after them, shadow
calls. After each piece, `IncrementalLooks.collect` (which reads only the rows and labels
stamped since its last look) must give what `Aggregator.collect(..., looks=0)` gives over
every row logged so far. Percentile samples are compared at a small sample size, so that
the sample's threshold falls as the pieces come. The same checks run on PostgreSQL in
tests/integration/experiments/test_experiments_aggregates_pg.py.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np
import pytest

from gateway.control.database import open_sqlite
from gateway.experiments.log import increments
from gateway.experiments.log.aggregates import Aggregator, ExperimentAggregates
from gateway.experiments.log.increments import IncrementalLooks
from gateway.experiments.log.records import COLUMNS
from gateway.experiments.log.store import SqlLogStore
from tests.unit.stats.test_experiments_aggregates import (
    CANDIDATE,
    CONTROL,
    THIRD,
    fill,
    seeded_log,
)

SEGMENTS = [0.0, 150.0]  # the seeded split changes half-way through 300 units


def db_now(store: SqlLogStore) -> float:
    """The database's clock (what `logged_at` stamps)."""
    db = store._db
    return float(db.fetch(f"SELECT {db.now_sql}")[0][0])


def later_than(store: SqlLogStore, when: float) -> float:
    """The database's clock once it reads after `when` (its resolution: 1 ms on SQLite)."""
    while (now := db_now(store)) <= when:
        pass
    return now


def assert_same_aggregates(got: ExperimentAggregates, want: ExperimentAggregates) -> None:
    assert got.arms == want.arms and got.served_arms == want.served_arms
    assert got.looks == want.looks  # exact: integer sums, every moment
    assert got.shadow == want.shadow
    assert got.first_served == want.first_served
    for arm in want.arms:
        g, w = got.latency[arm], want.latency[arm]
        assert g.fraction == w.fraction, arm
        assert list(g.unit) == list(w.unit), arm  # the same units, in the same order
        assert np.array_equal(g.ts, w.ts) and np.array_equal(g.latency_ms, w.latency_ms), arm


def arrive_in_pieces(store: SqlLogStore, seed: int, units: int, pieces: int, **kw: Any) -> None:
    """Write a seeded log in `pieces`, shuffled (late rows, labels before and after their
    rows), and after each compare the incremental look with the whole step's aggregates."""
    rows, labels, _ = seeded_log(seed, units, **kw)
    fill(store, seed, 0, **kw)  # the experiment's events only
    rng = np.random.default_rng(seed + 100)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    labels = [labels[i] for i in rng.permutation(len(labels))]
    arms = [CONTROL, CANDIDATE, *([THIRD] if kw.get("third_arm") else [])]
    sample = units // 2  # successful requests per arm read for percentiles: below them
    looks = IncrementalLooks(store._db, sample_rows=sample)
    since = units / 5
    read_before = 0
    fractions = []
    for piece in range(pieces):
        store.write_batch(rows[piece::pieces])
        store.add_feedback(labels[piece::pieces], 1e9)
        upto = db_now(store)
        got = looks.collect("exp", arms, SEGMENTS, since, upto=upto)
        reader = Aggregator(store._db, "exp", since)
        want = reader.collect(arms, SEGMENTS, looks=0)
        want_latency = {arm: reader.latency_sample(arm, rows=sample) for arm in arms}
        want = ExperimentAggregates(**{**vars(want), "latency": want_latency})
        assert_same_aggregates(got, want)
        assert got.upto == upto and got.paired == {arm: None for arm in arms[1:]}
        assert sum(sum(c) for c in got.first_served.values()) > 0 or piece == 0
        fractions.append(got.latency[CONTROL].fraction)
        # each look fetched what arrived since the last: never the whole log again
        assert looks.rows_read - read_before <= 4 * (len(rows[piece::pieces]) + len(labels))
        read_before = looks.rows_read
    assert fractions[0] > fractions[-1]  # the sample's threshold fell as the pieces came


@pytest.mark.parametrize(
    ("seed", "units", "pieces", "kwargs"),
    [(0, 300, 5, {}), (1, 60, 7, {"keyless": 0.5}), (2, 300, 4, {"third_arm": True})],
)
def test_incremental_looks_equal_the_whole_steps_aggregates(
    seed: int, units: int, pieces: int, kwargs: Any
) -> None:
    store = SqlLogStore(open_sqlite(None))
    arrive_in_pieces(store, seed, units, pieces, **kwargs)


def rows_after_upto_wait_for_the_next_look(store: SqlLogStore) -> None:
    """A row stamped after a look's `upto` is read by the next look, once."""
    rows, labels, _ = seeded_log(7, 50)
    fill(store, 7, 0)
    arms = [CONTROL, CANDIDATE]
    looks = IncrementalLooks(store._db)
    half = len(rows) // 2
    store.write_batch(rows[:half])
    first_upto = db_now(store)
    later_than(store, first_upto)
    store.write_batch(rows[half:])  # stamped after first_upto
    store.add_feedback(labels, 1e9)
    first = looks.collect("exp", arms, SEGMENTS, None, upto=first_upto)
    served = sum(first.looks[arm][0].errors.sy for arm in arms)
    assert served == sum(1 for r in rows[:half] if r[1] == "serve" and r[3] == "exp")
    assert sum(first.looks[arm][0].accuracy.sy for arm in arms) == 0  # labels came later
    again = looks.collect("exp", arms, SEGMENTS, None, upto=first_upto)
    assert again.looks == first.looks  # nothing new up to the same time: nothing read
    second = looks.collect("exp", arms, SEGMENTS, None, upto=db_now(store))
    assert second.looks == Aggregator(store._db, "exp").collect(arms, SEGMENTS, 0).looks
    assert sum(second.looks[arm][0].errors.sy for arm in arms) > served


def test_rows_stamped_after_a_looks_upto_wait_for_the_next_look() -> None:
    rows_after_upto_wait_for_the_next_look(SqlLogStore(open_sqlite(None)))


def test_a_later_look_reads_by_arrival_never_scanning_the_log(tmp_path: Any) -> None:
    """Every statement of a look after the first finds its rows through an index on
    arrival (`predictions_by_arrival`, `feedback_by_arrival`), not a scan of the log."""
    store = SqlLogStore(open_sqlite(tmp_path / "log.sqlite3"))
    rows, labels, _ = seeded_log(3, 200)
    fill(store, 3, 0)
    store.write_batch(rows[: len(rows) // 2])
    looks = IncrementalLooks(store._db)
    arms = [CONTROL, CANDIDATE]
    looks.collect("exp", arms, SEGMENTS, 20.0, upto=db_now(store))
    store.write_batch(rows[len(rows) // 2 :])
    store.add_feedback(labels, 1e9)
    executed: list[str] = []
    conn: sqlite3.Connection = store._db.conn
    conn.set_trace_callback(executed.append)  # with the bound values written in
    try:
        looks.collect("exp", arms, SEGMENTS, 20.0, upto=db_now(store))
    finally:
        conn.set_trace_callback(None)
    reads = [sql for sql in executed if "FROM" in sql and "predictions" in sql]
    assert len(reads) >= 5  # rows, labels, first rows, shadow, one sample per arm
    allowed = (  # the window's rows or labels by arrival, and single rows by their key
        "SEARCH p USING INDEX predictions_by_arrival (experiment=? AND logged_at>? AND logged_at<?)",
        "SEARCH f USING INDEX feedback_by_arrival (logged_at>? AND logged_at<?)",
        "SEARCH p USING INDEX sqlite_autoindex_predictions_1 (request_id=? AND kind=?)",
        "SEARCH f USING INDEX sqlite_autoindex_feedback_1 (request_id=?)",
    )
    for sql in reads:
        plan = [str(step[-1]) for step in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        tables = [  # the log's tables (a subquery's own rows are the window's)
            line
            for line in plan
            if line.split(" ")[:2]
            in (["SEARCH", "p"], ["SCAN", "p"], ["SEARCH", "f"], ["SCAN", "f"])
        ]
        for line in tables:  # no scan, no search of the experiment's rows by time
            assert line.removesuffix(" LEFT-JOIN") in allowed, (line, sql)
        assert any("_by_arrival" in line for line in tables), plan
    store.close()


def test_what_arrives_outside_the_contract_is_corrected_by_the_next_whole_read() -> None:
    """Rows written without `logged_at` after a look (a gateway of an older version in a
    rolling upgrade; a COMMIT that waited past the lag reads the same: stamped before a
    window already read) and rows the retention purged: missed, or still counted, until
    the step's state is `RECONCILE_S` old; then the look reads the step whole again and
    equals the whole step's aggregates."""
    store = SqlLogStore(open_sqlite(None))
    rows, _, _ = seeded_log(8, 100)
    fill(store, 8, 0)
    arms = [CONTROL, CANDIDATE]
    clock = [1000.0]
    looks = IncrementalLooks(store._db, clock=lambda: clock[0])
    store.write_batch(rows[: len(rows) // 2])
    first = looks.collect("exp", arms, SEGMENTS, None, upto=db_now(store))
    late = rows[len(rows) // 2 :]
    with store._db.transaction() as cursor:  # an older writer: no logged_at
        cursor.executemany(
            f"INSERT INTO predictions ({', '.join(COLUMNS)})"
            f" VALUES ({store._db.marks(len(COLUMNS))}) ON CONFLICT DO NOTHING",
            late,
        )
    store.purge(30.0)  # and the retention takes the step's oldest rows

    def served(aggregates: ExperimentAggregates) -> float:
        return sum(aggregates.looks[arm][0].errors.sy for arm in arms)

    whole = Aggregator(store._db, "exp").collect(arms, SEGMENTS, 0)
    clock[0] += increments.RECONCILE_S  # not yet past it
    missed = looks.collect("exp", arms, SEGMENTS, None, upto=later_than(store, first.upto or 0))
    assert served(missed) == served(first) != served(whole)  # the late rows: unseen
    clock[0] += 1.0
    again = looks.collect("exp", arms, SEGMENTS, None, upto=later_than(store, missed.upto or 0))
    assert_same_aggregates(again, whole)  # read whole: the late rows in, the purged out
