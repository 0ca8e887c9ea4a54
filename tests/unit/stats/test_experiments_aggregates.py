"""The analysis from the database's aggregates equals the row-level analysis (the oracle).

Seeded logs go through the project's own store (`SqlLogStore`: its inserts, its feedback
join); the row path (`store.records` -> `analyse`) and the aggregate path
(`analyse_store`: `log.aggregates` SQL -> `stats.summed`) must give the same JSON. The
same checks run on PostgreSQL in tests/integration/experiments/test_experiments_aggregates_pg.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from gateway.control.database import open_sqlite
from gateway.experiments import state_store
from gateway.experiments.log import aggregates
from gateway.experiments.log.records import Event, key_hash
from gateway.experiments.log.store import SqlLogStore
from gateway.experiments.stats.analysis import analyse, analyse_store
from gateway.settings import ExperimentSpec

CONTROL, CANDIDATE, THIRD = "tensorflow", "pytorch", "tensorflow:v2"


def _framework(arm: str) -> str:
    """The framework column of an arm's row (the third arm is TF's version 2)."""
    return arm.split(":")[0]


def seeded_log(
    seed: int, units: int, *, third_arm: bool = False, keyless: float = 0.1, roles: bool = True
) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]], list[Event]]:
    """A log with all the analysis reads: sticky units (some without a routing key, each
    request its own unit; failovers put a unit on both arms), errors, answers without
    top-1, labels, shadow calls (agreed or not), a split change half-way (the SRM's
    segments), and optionally a third arm outside the roles."""
    rng = np.random.default_rng(seed)
    arms = [CONTROL, CANDIDATE, *([THIRD] if third_arm else [])]
    split = {CONTROL: 50.0, CANDIDATE: 50.0}
    spec = ExperimentSpec(id="exp", model="m", split=split).model_dump(mode="json")
    events = [  # without a define event, the arms are the log's (sorted), rules the defaults
        *([Event("exp", "define", "configured", spec, 0.0)] if roles else []),
        Event("exp", "split", "admin", {"split": {CONTROL: 70.0, CANDIDATE: 30.0}}, units / 2.0),
    ]
    rows, labels, n = [], [], 0
    for u in range(units):
        arm = arms[int(rng.integers(len(arms)))]
        key = None if rng.random() < keyless else key_hash(f"user{u}")
        for k in range(int(rng.integers(1, 6))):
            n += 1
            rid, ts = f"{rng.integers(16**8):08x}-{n}", u + k / 10 + rng.random() / 20
            status = 503 if rng.random() < 0.05 else 200
            answered = status == 200 and rng.random() > 0.03  # an answer without top-1
            top1 = int(rng.integers(3)) if answered else None
            latency = float(np.round(rng.gamma(2.0, 2.0) + (3.0 if arm == CANDIDATE else 0), 3))
            failover = rng.random() < 0.05  # the other arm answered: one unit, two arms
            served_by = (CANDIDATE if arm == CONTROL else CONTROL) if failover else arm
            rows.append((rid, "serve", ts, "exp", "m", served_by, 1, key, latency, status,
                         top1, None, None, int(failover), _framework(served_by)))  # fmt: skip
            if rng.random() < 0.6:
                labels.append((rid, int(rng.integers(3))))
            if top1 is not None and rng.random() < 0.3:
                other = CANDIDATE if served_by == CONTROL else CONTROL
                shadow_top1 = top1 if rng.random() < 0.7 else (top1 + 1) % 3
                shadow_status = 200 if rng.random() < 0.95 else 500
                rows.append((rid, "shadow", ts + 0.01, "exp", "m", other, 1, key,
                             float(np.round(latency + rng.normal(1, 2), 3)), shadow_status,
                             shadow_top1, None, int(shadow_top1 == top1), 0,
                             _framework(other)))  # fmt: skip
    rows.append(
        (
            "other-1",
            "serve",
            3.0,
            "other",
            "m",
            CONTROL,
            1,
            None,
            1.0,
            200,
            0,
            None,
            None,
            0,
            CONTROL,
        )
    )  # fmt: skip  another experiment: never counted
    return rows, labels, events


def fill(store: SqlLogStore, seed: int, units: int, **kwargs: Any) -> list[Event]:
    rows, labels, events = seeded_log(seed, units, **kwargs)
    store.write_batch(rows)
    store.add_feedback(labels, 1e9)
    db = store._db
    with db.transaction() as cursor:
        for event in events:
            state_store.add_event(db, cursor, event)
    return events


def assert_same(got: Any, want: Any, where: str = "") -> None:
    """Equal JSON; floats to 1e-9 relative (sums of floats in another order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12) or (
            math.isnan(want) and math.isnan(got)
        ), where
    else:
        assert got == want, where


def both_paths(store: SqlLogStore, since: float | None = None) -> tuple[dict, dict]:
    events = store.events("exp")
    rows = store.records("exp", since)
    return analyse_store(store, "exp", since), analyse(rows, events, "exp")


@pytest.mark.parametrize(
    ("seed", "units", "kwargs"),
    [
        (0, 300, {}),
        (1, 40, {"keyless": 0.5}),
        (2, 600, {"third_arm": True}),
        (3, 200, {"roles": False}),
        (4, 3, {}),
    ],
)
def test_aggregates_give_the_row_paths_analysis(seed: int, units: int, kwargs: Any) -> None:
    store = SqlLogStore(open_sqlite(None))
    fill(store, seed, units, **kwargs)
    got, want = both_paths(store)
    assert_same(got, want)
    assert units < 10 or want["arms"][CONTROL]["requests"] > 0


def test_aggregates_of_the_rows_since_a_time_give_the_row_paths_analysis() -> None:
    store = SqlLogStore(open_sqlite(None))
    fill(store, 5, 300)
    got, want = both_paths(store, since=120.0)
    assert_same(got, want)
    assert got["srm"]["units"] == want["srm"]["units"]


def _without_history(result: Any) -> Any:
    if isinstance(result, dict):
        return {k: _without_history(v) for k, v in result.items() if k != "history"}
    if isinstance(result, list):
        return [_without_history(v) for v in result]
    return result


def _without_paired(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k not in ("paired", "upto")}
    out["comparisons"] = {
        c: {k: v for k, v in comparison.items() if k != "paired"}
        for c, comparison in result.get("comparisons", {}).items()
    }
    return out


@pytest.mark.parametrize(("seed", "since"), [(0, None), (2, 120.0)])
def test_without_history_the_rollout_reads_the_same_figures(seed: int, since: Any) -> None:
    """The controller's look (incremental, `log.increments`) reads every figure of the
    whole analysis but the history and the paired shadow analysis (which it never reads),
    up to the database's now (here without the lag the writers' commits need)."""
    store = SqlLogStore(open_sqlite(None), look_lag_s=0.0)
    fill(store, seed, 300, third_arm=seed == 2)
    full = analyse_store(store, "exp", since)
    light = analyse_store(store, "exp", since, history=False)
    assert full["history"] and light["history"] == []  # the looks are what it leaves out
    assert full["paired"] is not None and light["paired"] is None
    assert _without_paired(_without_history(light)) == _without_paired(_without_history(full))
    assert light["decision"] == full["decision"] and light["srm"] == full["srm"]
    assert light["upto"] > 0 and "upto" not in full  # the database time it read up to


def test_the_rollout_look_reads_nothing_logged_within_the_lag() -> None:
    """With the writers' lag (`LOOK_LAG_S`), rows logged just now wait for a later look."""
    store = SqlLogStore(open_sqlite(None))
    fill(store, 0, 300)
    light = analyse_store(store, "exp", None, history=False)
    assert light["arms"][CONTROL]["requests"] == 0  # logged less than the lag ago
    assert analyse_store(store, "exp")["arms"][CONTROL]["requests"] > 0


def test_the_seeded_log_exercises_every_figure() -> None:
    store = SqlLogStore(open_sqlite(None))
    fill(store, 0, 300)
    result = analyse_store(store, "exp")
    assert result["paired"]["accuracy"]["labelled_pairs"] > 0
    assert result["paired"]["accuracy"]["mcnemar_exact_p"] is not None
    assert result["srm"]["p_value"] is not None
    assert len(result["history"]) == aggregates.LOOKS
    assert all(f["accuracy"]["labelled"] > 0 for f in result["arms"].values())
    assert all(f["shadow"]["compared"] > 0 for f in result["arms"].values())


def test_an_empty_experiment_has_no_comparison_on_either_path() -> None:
    store = SqlLogStore(open_sqlite(None))
    got = analyse_store(store, "exp")
    assert got["arms"] == {} and "decision" not in got


def test_percentiles_read_a_bounded_deterministic_sample_of_whole_units() -> None:
    store = SqlLogStore(open_sqlite(None))
    fill(store, 6, 2000, keyless=0.0)
    reader = aggregates.Aggregator(store._db, "exp")
    whole = reader.latency_sample(CONTROL)
    sample = reader.latency_sample(CONTROL, rows=500)
    again = reader.latency_sample(CONTROL, rows=500)
    assert whole.fraction == 1.0 and 0 < sample.fraction < 1
    assert np.array_equal(sample.latency_ms, again.latency_ms)  # the same on every read
    assert 250 < sample.latency_ms.size < 1000 < whole.latency_ms.size  # ~500 of the arm's
    kept = set(sample.unit)
    for unit in kept:  # whole units: every request of a sampled unit
        assert (sample.unit == unit).sum() == (whole.unit == unit).sum()
    assert all(str(unit)[:8] < f"{int(sample.fraction * 16**8):08x}" for unit in kept)


def purge_case(store: SqlLogStore) -> tuple[int, int, int]:
    """Purge a seeded log at ts 100 in chunks of 7: (deleted, rows left, labels left),
    checked against the rows and labels older and younger than the cut."""
    fill(store, 7, 150)
    rows = store.records(None)
    old = [r for r in rows if r[2] < 100.0]
    labelled = {r[0] for r in rows if r[-1] is not None}  # labels given at ts 1e9: kept
    store.add_feedback([("never-logged", 1)], 50.0)  # pending, as old: purged
    deleted = store.purge(100.0, chunk=7)
    assert deleted == len(old) > 7
    left = store.records(None)
    assert len(left) == len(rows) - len(old) and all(r[2] >= 100.0 for r in left)
    labels = store._db.fetch("SELECT request_id FROM feedback")
    assert {row[0] for row in labels} == labelled
    return deleted, len(left), len(labels)


def test_retention_purges_in_chunks_each_its_own_transaction() -> None:
    store = SqlLogStore(open_sqlite(None))
    deletes: list[str] = []
    conn = store._db.conn
    conn.set_trace_callback(lambda sql: deletes.append(sql) if sql.startswith("DELETE") else None)
    deleted, _, _ = purge_case(store)
    conn.set_trace_callback(None)
    row_deletes = [sql for sql in deletes if "FROM predictions WHERE (request_id" in sql]
    assert len(row_deletes) == deleted // 7 + 1  # at most 7 rows a statement and transaction
