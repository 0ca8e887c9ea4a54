"""Stores that come back (issue 24): reconnection with backoff, bounded waits, no write
applied after its caller was answered 503, PostgreSQL's timeouts on every connection."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.control.database import (
    CONTROL_TIMEOUTS,
    Database,
    StoreTimeouts,
    StoreUnavailable,
    open_sqlite,
    postgres_parameters,
)
from gateway.control.plane import ControlPlane
from gateway.control.thread import StoreThread
from gateway.core.errors import GatewayError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FlakyDriver:
    """`connect()` fails while `down`; its connections' statements fail after `drop()`."""

    class Lost(Exception):
        pass

    def __init__(self, path: Path) -> None:
        self.path, self.down, self.attempts = path, False, 0
        self.opened: list[sqlite3.Connection] = []

    def connect(self) -> Any:
        self.attempts += 1
        if self.down:
            raise self.Lost("connection refused")
        conn = sqlite3.connect(self.path, check_same_thread=False)
        self.opened.append(conn)
        return conn

    def drop(self) -> None:
        for conn in self.opened:
            conn.close()  # its next statement raises sqlite3.ProgrammingError


def _flaky(tmp_path: Path) -> tuple[FlakyDriver, Database, Clock]:
    driver, clock = FlakyDriver(tmp_path / "x.sqlite3"), Clock()
    lost = (FlakyDriver.Lost, sqlite3.ProgrammingError)
    db = Database(driver.connect, "?", sqlite3.IntegrityError, lost, "the test store", clock)
    db.create_schema(["CREATE TABLE IF NOT EXISTS t (v INTEGER)"])
    return driver, db, clock


def test_a_lost_connection_is_a_503_and_is_reopened_at_the_next_call(tmp_path: Path) -> None:
    driver, db, _ = _flaky(tmp_path)
    driver.drop()
    with pytest.raises(StoreUnavailable) as caught:
        db.fetch("SELECT COUNT(*) FROM t")
    assert caught.value.status == 503 and "the test store" in caught.value.message
    assert caught.value.headers["Retry-After"] == "1"
    assert db.fetch("SELECT COUNT(*) FROM t") == [(0,)] and driver.attempts == 2


def test_reconnection_backs_off_doubling_up_to_two_seconds(tmp_path: Path) -> None:
    driver, db, clock = _flaky(tmp_path)
    driver.drop()
    driver.down = True
    tried_at: list[float] = []
    while len(tried_at) < 8:  # a caller every 50 ms; attempts only once each backoff passed
        before = driver.attempts
        with pytest.raises(StoreUnavailable):
            db.fetch("SELECT 1")
        if driver.attempts > before:
            tried_at.append(clock.now)
        clock.now += 0.05
    waits = [round(b - a, 2) for a, b in itertools.pairwise(tried_at)]
    expected = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]  # to the callers' 50 ms step
    assert all(e <= w <= e + 0.05 for w, e in zip(waits, expected, strict=True)), waits
    driver.down = False
    clock.now += 2.0
    assert db.fetch("SELECT COUNT(*) FROM t") == [(0,)]


def test_a_transaction_past_its_deadline_is_rolled_back_not_committed(tmp_path: Path) -> None:
    _, db, clock = _flaky(tmp_path)
    db.deadline = clock.now - 1
    with pytest.raises(StoreUnavailable, match="rolled back"), db.transaction() as cursor:
        cursor.execute("INSERT INTO t VALUES (1)")
    db.deadline = None
    assert db.fetch("SELECT COUNT(*) FROM t") == [(0,)]


def test_a_hung_call_answers_503_in_its_bound_and_its_write_and_the_queued_one_never_land(
    tmp_path: Path,
) -> None:
    db, gate, entered = open_sqlite(tmp_path / "h.sqlite3"), threading.Event(), threading.Event()
    db.create_schema(["CREATE TABLE IF NOT EXISTS t (v INTEGER)"])
    thread = StoreThread("test")

    def hung_write() -> None:
        with db.transaction() as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")
            entered.set()
            assert gate.wait(10)  # the database "wakes up" only when the test says so

    def queued_write() -> None:
        with db.transaction() as cursor:
            cursor.execute("INSERT INTO t VALUES (2)")

    async def run() -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for call in (hung_write, queued_write):
            try:
                await thread.call(call, 0.2, db)
                results.append(None)
            except GatewayError as exc:
                results.append(exc)
        assert entered.is_set()
        gate.set()
        await thread.call(lambda: None, None)  # the thread has run everything queued
        return results

    results = asyncio.run(run())
    thread.shutdown()
    assert [type(r) for r in results] == [StoreUnavailable, StoreUnavailable]
    assert "within 0.2 s" in str(results[0])
    assert db.fetch("SELECT COUNT(*) FROM t") == [(0,)]  # neither write was applied


def test_postgres_connections_carry_connect_statement_idle_and_keepalive_bounds() -> None:
    url = "postgresql://u@db.example:6543/x?options=-c%20search_path%3Dlog"
    params = postgres_parameters(url, CONTROL_TIMEOUTS)
    assert params["host"] == "db.example" and params["port"] == "6543"
    assert params["connect_timeout"] == 2 and params["keepalives"] == 1
    assert params["keepalives_idle"] == 10 and params["keepalives_count"] == 3
    options = params["options"]
    assert options.startswith("-c search_path=log")  # the URL's own options are kept
    assert "-c statement_timeout=1500" in options
    assert "-c idle_in_transaction_session_timeout=5000" in options
    assert "jit" not in options  # no further setting unless asked


def test_a_sessions_further_settings_are_sent_at_every_connection() -> None:
    timeouts = StoreTimeouts(statement_s=60.0, settings=(("jit", "off"), ("work_mem", "8MB")))
    options = postgres_parameters("postgresql://u@h/x", timeouts)["options"]
    assert options.endswith("-c jit=off -c work_mem=8MB")
    assert "-c statement_timeout=60000" in options


def test_the_control_plane_answers_503_within_its_bound_while_its_database_hangs(
    tmp_path: Path,
) -> None:
    db = open_sqlite(tmp_path / "c.sqlite3")
    gate = threading.Event()

    def write(db: Database, cursor: Any) -> None:
        cursor.execute("SELECT 1")
        assert gate.wait(10)

    async def run() -> tuple[StoreUnavailable, int]:
        plane = ControlPlane(lambda: db, poll_s=3600, call_timeout_s=0.2)
        await plane.start()
        revision = plane.revision
        with pytest.raises(StoreUnavailable) as caught:
            await plane.write(write)
        gate.set()
        await plane.refresh()  # the thread is free again, and the write was rolled back
        assert plane.revision == revision
        await plane.aclose()
        return caught.value, revision

    error, _ = asyncio.run(run())
    assert error.status == 503 and "Retry-After" in error.headers
