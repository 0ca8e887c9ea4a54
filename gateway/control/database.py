"""The experiments database: one connection, one SQL dialect, SQLite or PostgreSQL.

The prediction log, the policy layers and the experiments' state live in the same
database (`experiments.database_url`, else `predictions.sqlite3` in the data folder).
Several gateway processes open it at once: schema creation is idempotent (under an
advisory lock on PostgreSQL, whose `CREATE TABLE IF NOT EXISTS` races on its catalog),
and SQLite waits for a busy writer (`busy_timeout`) instead of failing.

A `Database` is used from one thread only; callers run it on their own worker thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SQLITE_FILE = "predictions.sqlite3"
BUSY_TIMEOUT_S = 10.0  # SQLite: how long a writer waits for another process's write
_SCHEMA_LOCK = 0x6475616C  # PostgreSQL advisory lock id ("dual") around schema creation
Row = tuple[Any, ...]


class Database:
    """A DB-API connection and the dialect facts the stores need.

    Attributes:
        placeholder: the parameter mark (`?` for SQLite, `%s` for PostgreSQL).
        integrity_error: the driver's exception for a violated constraint.
    """

    def __init__(self, connection: Any, placeholder: str, integrity_error: type[Exception]) -> None:
        self.conn = connection
        self.placeholder = placeholder
        self.integrity_error = integrity_error
        self.postgres = placeholder == "%s"

    def marks(self, count: int) -> str:
        return ", ".join([self.placeholder] * count)

    def create_schema(self, statements: Iterable[str]) -> None:
        """Run `CREATE ... IF NOT EXISTS` statements once, safely from many processes."""
        with self.transaction() as cursor:
            if self.postgres:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in statements:
                cursor.execute(statement)

    def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self.transaction() as cursor:  # ends the read transaction (PostgreSQL keeps it
            cursor.execute(sql, params)  # open otherwise); rolled back on errors
            return [tuple(row) for row in cursor.fetchall()]

    def transaction(self) -> Transaction:
        """`with db.transaction() as cursor:` commits on success, rolls back on error."""
        return Transaction(self.conn)

    def close(self) -> None:
        self.conn.close()


class Transaction:
    """A cursor that commits on success and rolls back on error."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __enter__(self) -> Any:
        self._cursor = self._conn.cursor()
        return self._cursor

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._cursor.close()
        if exc_type is None:
            self._conn.commit()
        else:
            self._conn.rollback()


def open_sqlite(path: Path | None) -> Database:
    """A file in WAL mode (readers never block the writer; several processes may write,
    one at a time, each waiting up to `BUSY_TIMEOUT_S`), or in memory when `path` is None."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    target = ":memory:" if path is None else path
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    _use_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints
    return Database(conn, "?", sqlite3.IntegrityError)


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch a new file to WAL. SQLite answers "database is locked" at once, without its
    busy handler, when two processes switch the same new file together (workers starting
    at once): the loser retries until the winner is done, within `BUSY_TIMEOUT_S`."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # the other process holds the lock for microseconds


def open_postgres(url: str) -> Database:
    import psycopg  # only when PostgreSQL is configured

    return Database(psycopg.connect(url), "%s", psycopg.IntegrityError)


def open_database(database_url: str | None, data_dir: Path | None) -> Database:
    """`sqlite:///path`, `postgresql://...`, or None for `data_dir/predictions.sqlite3`
    (in memory, not kept and not shared, when `data_dir` is None too).

    Raises:
        ValueError: `database_url` has another scheme.
    """
    if database_url is None:
        return open_sqlite(None if data_dir is None else data_dir / SQLITE_FILE)
    if database_url.startswith("sqlite:///"):
        return open_sqlite(Path(database_url.removeprefix("sqlite:///")))
    if database_url.startswith(("postgresql://", "postgres://")):
        return open_postgres(database_url)
    raise ValueError(f"database_url must be sqlite:///PATH or postgresql://..., got {database_url}")
