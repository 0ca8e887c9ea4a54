"""The prediction log's writer process: batches written and acknowledged in order, a bad
record or a failing database counted while the writer keeps going, a killed writer
started again, SIGTERM ignored so the gateway's drain still writes everything."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from gateway.control.database import SQLITE_FILE
from gateway.experiments.log.process import WriterGone, WriterProcess
from gateway.experiments.log.records import PredictionRecord, key_hash
from gateway.experiments.log.sink import PredictionLog
from gateway.experiments.log.store import SqliteLogStore
from gateway.experiments.log.top1 import summarise


def _outcome(i: int) -> PredictionRecord:
    probs = np.array([[0.1, 0.2, 0.7]], dtype=np.float32)
    return PredictionRecord(
        request_id=f"r{i}",
        kind="serve",
        ts=50.0 + i,
        experiment="exp",
        model="toy",
        arm="tensorflow",
        version=2,
        routing_key=f"k{i}",
        latency_s=0.0025,
        status=200,
        outputs={"probabilities": probs},
    )


def _rows(folder: Path) -> list[tuple[object, ...]]:
    """Another connection's view, in insertion order (the independent truth)."""
    with contextlib.closing(sqlite3.connect(folder / SQLITE_FILE)) as conn:
        sql = "SELECT request_id, key_hash, latency_ms, top1, prob FROM predictions ORDER BY rowid"
        return list(conn.execute(sql))


def _log(
    folder: Path, queue_size: int = 1000, batch_size: int = 500, linger_s: float = 3600.0
) -> PredictionLog:
    return PredictionLog(
        lambda: SqliteLogStore(folder / SQLITE_FILE),
        queue_size, batch_size, linger_s, writer=WriterProcess(None, folder),
    )  # fmt: skip


def test_the_writer_process_writes_rows_as_the_thread_would(tmp_path: Path) -> None:
    async def run() -> PredictionLog:
        log = _log(tmp_path)
        await log.start()
        for i in (2, 0, 1):
            log.submit(_outcome(i))
        await log.flush()  # written means committed: another connection sees them
        assert [row[0] for row in _rows(tmp_path)] == ["r2", "r0", "r1"]
        await log.aclose()
        return log

    log = asyncio.run(run())
    assert log.counters.written == 3 and log.counters.write_errors == 0
    first = _rows(tmp_path)[0]
    assert first == ("r2", key_hash("k2"), 2.5, 2, float(np.float32(0.7)))


def test_a_bad_record_and_a_failing_database_are_counted_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    async def run() -> tuple[PredictionLog, list[tuple[object, ...]]]:
        log = _log(tmp_path)
        await log.start()
        writer = log._writer
        assert writer is not None
        bad = dataclasses.replace(summarise(_outcome(0)), latency_s="not a latency")
        assert await writer.write([bad, summarise(_outcome(1))]) == (1, 1, 0)
        with contextlib.closing(sqlite3.connect(tmp_path / SQLITE_FILE)) as conn:
            conn.execute("ALTER TABLE predictions RENAME TO gone")  # the database fails
        assert await writer.write([summarise(_outcome(2))]) == (0, 1, 0)
        with contextlib.closing(sqlite3.connect(tmp_path / SQLITE_FILE)) as conn:
            conn.execute("ALTER TABLE gone RENAME TO predictions")
        log.submit(_outcome(3))
        await log.flush()
        rows = _rows(tmp_path)
        await log.aclose()
        return log, rows

    log, rows = asyncio.run(run())
    assert [row[0] for row in rows] == ["r1", "r3"] and log.counters.written == 1


def test_a_killed_writer_fails_its_batch_and_is_started_again(tmp_path: Path) -> None:
    async def run() -> tuple[PredictionLog, list[tuple[object, ...]]]:
        log = _log(tmp_path)
        await log.start()
        writer = log._writer
        assert writer is not None and writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
        with pytest.raises(WriterGone):
            await writer.write([summarise(_outcome(0))])
        log.submit(_outcome(1))
        await log.flush()  # a new writer process wrote it
        rows = _rows(tmp_path)
        await log.aclose()
        return log, rows

    log, rows = asyncio.run(run())
    assert [row[0] for row in rows] == ["r1"] and log.counters.written == 1


def test_sigterm_to_the_writer_is_ignored_and_aclose_writes_everything(tmp_path: Path) -> None:
    async def run() -> PredictionLog:
        log = _log(tmp_path)
        await log.start()
        writer = log._writer
        assert writer is not None and writer.pid is not None
        os.kill(writer.pid, signal.SIGTERM)  # `stop` signals the gateway's whole group
        for i in range(200):
            log.submit(_outcome(i))
        await log.aclose()  # the drain: an hour's linger, yet everything is written
        return log

    log = asyncio.run(run())
    assert log.counters.written == 200 and log.counters.write_errors == 0
    assert [row[0] for row in _rows(tmp_path)] == [f"r{i}" for i in range(200)]


def test_a_full_buffer_drops_while_the_writer_is_busy(tmp_path: Path) -> None:
    async def run() -> PredictionLog:
        log = _log(tmp_path, queue_size=50, batch_size=10, linger_s=0.0)
        await log.start()
        accepted = sum(log.submit(_outcome(i)) for i in range(500))  # no await: no writes
        assert accepted == 50 and log.queued == 50
        await log.aclose()
        return log

    log = asyncio.run(run())
    assert log.counters.dropped == 450 and log.counters.written == 50
