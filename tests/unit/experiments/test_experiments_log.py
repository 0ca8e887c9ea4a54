"""The prediction log sink: never waits, drops and counts when full, flushes and closes
with everything written in order, survives a failing store and a malformed record."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

from gateway.experiments.log.records import PredictionRecord, Row, prediction_record
from gateway.experiments.log.sink import PredictionLog
from gateway.experiments.log.store import SqliteLogStore, watermark_sql
from gateway.experiments.log.top1 import to_row, top1


class GatedStore(SqliteLogStore):
    """An in-memory store whose writes wait for `gate` (a slow disk), or fail."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__(None)
        self.fail = fail
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.gate.set()

    def write_batch(self, rows: Sequence[Row]) -> None:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        if self.fail:
            raise OSError("disk full")
        super().write_batch(rows)


def _outcome(i: int, outputs: dict[str, np.ndarray] | None = None) -> PredictionRecord:
    probs = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    outputs = {"probabilities": probs} if outputs is None else outputs
    return PredictionRecord(
        request_id=f"r{i}", kind="serve", ts=100.0 + i, experiment="exp", model="toy",
        arm="pytorch", version=1, routing_key=f"k{i}", latency_s=0.001, status=200,
        outputs=outputs,
    )  # fmt: skip


async def _until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    """Poll `condition` (a bounded deadline, not a sleep as synchronisation)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


def _stored_ids(log: PredictionLog) -> Callable[[], Awaitable[list[str]]]:
    async def ids() -> list[str]:
        return [row[0] for row in await log.run(lambda store: store.records(None))]

    return ids


def test_a_full_buffer_drops_and_counts_without_waiting() -> None:
    async def run() -> tuple[PredictionLog, int, int]:
        store = GatedStore()
        log = PredictionLog(lambda: store, queue_size=10, batch_size=5, linger_s=0)
        await log.start()
        store.gate.clear()
        log.submit(_outcome(0))
        await _until(store.entered.is_set)  # the writer holds r0, blocked in the store
        accepted = sum(log.submit(_outcome(i)) for i in range(1, 101))
        queued = log.queued  # every submit returned while the store was still blocked
        store.gate.set()
        await log.aclose()
        return log, accepted, queued

    log, accepted, queued = asyncio.run(run())
    assert accepted == 10 and queued == 10  # the buffer's bound, never more
    assert log.counters.dropped == 90 and log.counters.submitted == 11
    assert log.counters.written == 11  # aclose wrote the buffered ten and r0


def test_a_failing_store_is_counted_and_the_writer_keeps_going() -> None:
    async def run() -> tuple[PredictionLog, list[str]]:
        store = GatedStore(fail=True)
        log = PredictionLog(lambda: store, 100, 10, 0)
        await log.start()
        for i in range(5):
            log.submit(_outcome(i))
        await log.flush()
        store.fail = False
        log.submit(_outcome(5))
        await log.flush()
        ids = await _stored_ids(log)()
        await log.aclose()
        return log, ids

    log, ids = asyncio.run(run())
    assert log.counters.write_errors == 5 and log.counters.written == 1 and ids == ["r5"]


def test_a_malformed_record_is_counted_and_its_batch_is_written() -> None:
    async def run() -> tuple[PredictionLog, list[str]]:
        log = PredictionLog(GatedStore, 100, 10, 10.0)
        await log.start()
        log.submit(_outcome(0))
        log.submit(_outcome(1, {"class": np.array([], dtype=np.int64)}))  # no first class
        log.submit(_outcome(2))
        await log.flush()
        ids = await _stored_ids(log)()
        await log.aclose()
        return log, ids

    log, ids = asyncio.run(run())
    assert ids == ["r0", "r2"] and log.counters.write_errors == 1 and log.counters.written == 2


def test_flush_writes_everything_submitted_in_order_without_waiting_for_the_linger(
    tmp_path: Path,
) -> None:
    path, batches = tmp_path / "log.sqlite3", list[int]()

    async def run() -> int:
        log = PredictionLog(lambda: SqliteLogStore(path), 1000, 500, 3600.0, batches.append)
        await log.start()
        for i in (3, 1, 2, 0, *range(4, 30)):  # not the order of ids or times
            log.submit(_outcome(i))
        await log.flush()  # an hour's linger: only flush can have written them
        written = log.counters.written
        await log.aclose()
        return written

    assert asyncio.run(run()) == 30 and batches == [30]
    assert _insertion_order(path) == [f"r{i}" for i in (3, 1, 2, 0, *range(4, 30))]


def _insertion_order(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT request_id FROM predictions ORDER BY rowid")]


def test_a_full_batch_is_written_before_the_linger_ends() -> None:
    async def run() -> PredictionLog:
        log = PredictionLog(GatedStore, 1000, batch_size=5, linger_s=3600.0)
        await log.start()
        for i in range(5):
            log.submit(_outcome(i))
        await _until(lambda: log.counters.written == 5)
        await log.aclose()
        return log

    assert asyncio.run(run()).counters.written == 5


def test_aclose_writes_what_is_buffered(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"

    async def run() -> None:
        log = PredictionLog(lambda: SqliteLogStore(path), 1000, 500, linger_s=3600.0)
        await log.start()
        for i in range(40):
            log.submit(_outcome(i))
        await log.aclose()

    asyncio.run(run())
    rows = SqliteLogStore(path).records(None)  # another connection: it is on disk
    assert [row[0] for row in rows] == [f"r{i}" for i in range(40)]


def test_top1_reads_the_first_example() -> None:
    probs = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]], dtype=np.float32)
    assert top1({"probabilities": probs}) == (1, float(np.float32(0.7)))
    assert top1({"probabilities": probs, "class": np.array([2, 0])}) == (2, float(np.float32(0.2)))
    assert top1({"class": np.array([[3]])}) == (3, None)
    assert top1({"probabilities": probs, "class": np.array([7, 0])}) == (7, None)  # no such class
    assert top1(None) == (None, None) and top1({"other": probs}) == (None, None)


def test_rows_carry_top1_and_hash_the_key(tmp_path: Path) -> None:
    row = to_row(_outcome(1))
    assert row[10:12] == (1, np.float32(0.7)) and row[7] != "k1" and len(row[7]) == 16
    store = SqliteLogStore(tmp_path / "log.sqlite3")
    store.write_batch([row, row])  # the same request twice is kept once
    results = store.add_feedback([("r1", 1), ("r1", 1), ("zz", 0)], ts=0.0)
    assert [r.outcome for r in results] == ["recorded", "duplicate", "pending"]
    (record,) = store.records("exp")
    assert record[-1] == 1 and store.summary()["exp"]["pytorch"]["accuracy"] == 1.0
    assert store.purge(before_ts=time.time() + 1) == 1 and store.records(None) == []


def test_records_since_a_time_keep_only_later_rows_of_that_experiment(tmp_path: Path) -> None:
    outcomes = [_outcome(i) for i in range(4)]  # r0 at 100 ... r3 at 103
    outcomes[3] = dataclasses.replace(outcomes[3], experiment="other")
    store = SqliteLogStore(tmp_path / "log.sqlite3")
    store.write_batch([to_row(o) for o in outcomes])
    assert [r[0] for r in store.records("exp", since=101.0)] == ["r1", "r2"]
    assert [r[0] for r in store.records("exp")] == ["r0", "r1", "r2"]
    assert [r[0] for r in store.records(None, since=102.5)] == ["r3"]


def test_the_fast_builder_puts_every_field_where_its_keyword_says() -> None:
    fields = {
        "request_id": "r", "kind": "shadow", "ts": 1.5, "experiment": "exp", "model": "toy",
        "arm": "tensorflow", "version": 3, "routing_key": "k", "latency_s": 0.25,
        "status": 503, "agreed": False, "failover": True, "outputs": {"class": np.array([1])},
    }  # fmt: skip
    record = prediction_record(**fields)
    assert record == PredictionRecord(**fields)
    assert {name: getattr(record, name) for name in fields} == fields
    assert (record.top1, record.prob) == (None, None)


def test_the_watermark_moves_with_rows_and_labels_and_reads_by_index(tmp_path: Path) -> None:
    outcomes = [_outcome(i) for i in range(4)]  # r0 at 100 ... r3 at 103
    outcomes[3] = dataclasses.replace(outcomes[3], experiment="other")
    store = SqliteLogStore(tmp_path / "log.sqlite3")
    assert store.watermark("exp", 0.0) is None  # an empty log: nothing to look at
    before = time.time()
    store.write_batch([to_row(o) for o in outcomes[:2]])
    assert store.watermark("exp", 101.5) is None  # no row of exp at or after 101.5
    first = store.watermark("exp", 100.0)
    assert first is not None and first[:2] == (101.0, 0.0)  # the latest row; no label yet
    store.write_batch([to_row(o) for o in outcomes[2:]])  # r2 (exp) at 102, r3 (other)
    second = store.watermark("exp", 100.0)
    assert second is not None and second[:2] == (102.0, 0.0)  # another experiment's: no
    store.add_feedback([("r0", 1)], ts=500.0)
    third = store.watermark("exp", 100.0)
    assert third is not None and third[:2] == (102.0, 500.0)  # a label on an old row: yes
    # arrival: the database's clock at each write, never going back
    # seconds since the epoch, within the writes (SQLite's clock keeps milliseconds)
    assert before - 0.002 <= first.logged <= second.logged <= third.logged <= time.time()
    params = ("exp", 1.0, "exp")
    plans = [
        " ".join(str(part) for part in step)
        for step in store._db.fetch(f"EXPLAIN QUERY PLAN {watermark_sql('?')}", params)
    ]
    assert any("predictions_by_experiment" in p for p in plans), plans  # no table scan
    assert any("feedback_by_ts" in p for p in plans), plans
    assert any("predictions_by_arrival" in p for p in plans), plans
    assert any("feedback_by_arrival" in p for p in plans), plans
    store.close()
