"""The prediction log sink: never waits, drops and counts when full, survives a failing store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gateway.experiments.log import PredictionLog
from gateway.experiments.records import Outcome, Row, to_row
from gateway.experiments.store import SqliteLogStore


class SlowStore(SqliteLogStore):
    def __init__(self, delay: float, fail: bool = False) -> None:
        super().__init__(None)
        self.delay, self.fail = delay, fail

    def write_batch(self, rows: Sequence[Row]) -> None:
        time.sleep(self.delay)
        if self.fail:
            raise OSError("disk full")
        super().write_batch(rows)


def _outcome(i: int) -> Outcome:
    probs = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    return Outcome(
        f"r{i}", "exp", "toy", "pytorch", 1, f"k{i}", 0.001, 200, {"probabilities": probs}
    )


def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    async def run() -> tuple[float, PredictionLog, int]:
        store = SlowStore(0.2)
        log = PredictionLog(lambda: store, queue_size=10, batch_size=5, linger_s=0)
        await log.start()
        started = time.perf_counter()
        accepted = sum(log.submit(_outcome(i)) for i in range(100))
        elapsed = time.perf_counter() - started
        await log.aclose()
        return elapsed, log, accepted

    elapsed, log, accepted = asyncio.run(run())
    assert elapsed < 0.1  # 100 submits never waited for a 0.2 s write
    assert log.counters.dropped == 100 - accepted and log.counters.dropped >= 85
    assert log.counters.written == accepted


def test_a_failing_store_is_counted_and_the_writer_keeps_going() -> None:
    async def run() -> PredictionLog:
        log = PredictionLog(lambda: SlowStore(0, fail=True), 100, 10, 0)
        await log.start()
        for i in range(5):
            log.submit(_outcome(i))
        await log.flush()
        await log.aclose()
        return log

    log = asyncio.run(run())
    assert log.counters.write_errors == 5 and log.counters.written == 0


def test_rows_carry_top1_and_hash_the_key(tmp_path: Path) -> None:
    row = to_row(_outcome(1))
    assert row[10:12] == (1, np.float32(0.7)) and row[7] != "k1" and len(row[7]) == 16
    store = SqliteLogStore(tmp_path / "log.sqlite3")
    store.write_batch([row, row])  # the same request twice is kept once
    results = store.add_feedback([("r1", 1), ("r1", 1), ("zz", 0)], ts=0.0)
    assert [r.outcome for r in results] == ["recorded", "duplicate", "unknown"]
    (record,) = store.records("exp")
    assert record[-1] == 1 and store.summary()["exp"]["pytorch"]["accuracy"] == 1.0
    assert store.purge(before_ts=time.time() + 1) == 1 and store.records(None) == []


def test_records_since_a_time_keep_only_later_rows_of_that_experiment(tmp_path: Path) -> None:
    outcomes = [_outcome(i) for i in range(4)]
    for i, outcome in enumerate(outcomes):
        outcome.ts = 100.0 + i  # r0 at 100 ... r3 at 103
    outcomes[3].experiment = "other"
    store = SqliteLogStore(tmp_path / "log.sqlite3")
    store.write_batch([to_row(o) for o in outcomes])
    assert [r[0] for r in store.records("exp", since=101.0)] == ["r1", "r2"]
    assert [r[0] for r in store.records("exp")] == ["r0", "r1", "r2"]
    assert [r[0] for r in store.records(None, since=102.5)] == ["r3"]
