"""The experiments database: one connection, one SQL dialect, SQLite or PostgreSQL.

The prediction log, the policy layers and the experiments' state live in the same
database (`experiments.database_url`, else `predictions.sqlite3` in the data folder).
Several gateway processes open it at once: schema creation is idempotent (under an
advisory lock on PostgreSQL, whose `CREATE TABLE IF NOT EXISTS` races on its catalog),
and SQLite waits for a busy writer (`busy_timeout`) instead of failing.

Dependencies come back (issue 24): a `Database` opens its connection when first used and
again after any connection error, no sooner than a backoff (0.1 s doubling to 2 s) after
the last failed attempt; meanwhile, and whenever a statement fails for the database's
sake, it raises `StoreUnavailable` (503 naming the store, with `Retry-After`). PostgreSQL
connections carry a connect timeout, a statement timeout, an idle-in-transaction timeout
and TCP keepalives (`StoreTimeouts`); libpq's parameters, as psycopg 3 passes them on
(https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS).
A caller that stops waiting sets `deadline`: a transaction still open at its deadline is
rolled back instead of committed, so a write whose client was answered 503 is never
applied later (the window left is the COMMIT's own round trip).

A `Database` is used from one thread only; callers run it on their own worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import grpc

from gateway.core.errors import GatewayError

logger = logging.getLogger(__name__)
SQLITE_FILE = "predictions.sqlite3"
BUSY_TIMEOUT_S = 10.0  # SQLite: how long a writer waits for another process's write
_SCHEMA_LOCK = 0x6475616C  # PostgreSQL advisory lock id ("dual") around schema creation
_BACKOFF_S = (0.1, 2.0)  # first and longest wait between two connection attempts
Row = tuple[Any, ...]
Transaction = contextlib.AbstractContextManager[Any]  # what `Database.transaction` returns


class StoreUnavailable(GatewayError):
    """The database cannot answer now (down, restarting, hung, timed out): 503 naming the
    store, with `Retry-After` (RFC 9110 §10.2.3) in whole seconds."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})


@dataclass(frozen=True)
class StoreTimeouts:
    """PostgreSQL's bounds for one connection (seconds).

    Attributes:
        connect_s: libpq `connect_timeout` (whole seconds, at least 2 as libpq requires).
        statement_s: `statement_timeout`: the server cancels a longer statement.
        idle_in_transaction_s: the server ends a session idle inside a transaction
            (a client that gave up mid-transaction) and rolls it back.
        keepalive_idle_s: TCP keepalive probes start after this much silence (libpq
            `keepalives_idle`; 3 probes `keepalive_interval_s` apart end the connection).
        settings: further server settings of the session, (name, value) pairs sent as
            `-c name=value` at every connection (a reconnection keeps them).
    """

    connect_s: int = 2
    statement_s: float = 1.5
    idle_in_transaction_s: float = 5.0
    keepalive_idle_s: int = 10
    keepalive_interval_s: int = 5
    settings: tuple[tuple[str, str], ...] = ()


CONTROL_TIMEOUTS = StoreTimeouts()
LOG_TIMEOUTS = StoreTimeouts(statement_s=30.0)  # batch inserts and analysis reads


class Database:
    """A DB-API connection, reopened after connection errors, and the dialect facts.

    Args:
        connect: opens a new connection.
        placeholder: the parameter mark (`?` for SQLite, `%s` for PostgreSQL).
        integrity_error: the driver's exception for a violated constraint.
        lost: the driver's exceptions after which the connection is discarded.
        name: how errors name the store ("PostgreSQL at host:port", "SQLite file ...").
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        placeholder: str,
        integrity_error: type[Exception],
        lost: tuple[type[Exception], ...] = (),
        name: str = "the experiments database",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._conn: Any = None
        self._lost = lost
        self._clock = clock
        self._retry_at = 0.0
        self._backoff_s = _BACKOFF_S[0]
        self.placeholder = placeholder
        self.integrity_error = integrity_error
        self.postgres = placeholder == "%s"
        # Text compared byte by byte (UTF-8: by code point, as Python and numpy compare):
        # PostgreSQL's collation may be a language's (en_US orders 'B-1' after 'a-2');
        # SQLite's BINARY already is. Where request ids and sample keys are ordered.
        self.byte_order = ' COLLATE "C"' if self.postgres else ""
        # The database's clock, seconds since the epoch (a log row's `logged_at`):
        # PostgreSQL's transaction start, SQLite's statement time (julianday, ms).
        self.now_sql = (
            "CAST(EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION)"
            if self.postgres
            else "((julianday('now') - 2440587.5) * 86400.0)"
        )
        self.name = name
        self.deadline: float | None = None  # `clock()` time after which nothing commits

    @property
    def conn(self) -> Any:
        """The open connection, opened (or reopened) now if needed.

        Raises:
            StoreUnavailable: it cannot be opened, or the last attempt failed less than
                the backoff ago.
        """
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def marks(self, count: int) -> str:
        return ", ".join([self.placeholder] * count)

    def create_schema(self, statements: Iterable[str]) -> None:
        """Run `CREATE ... IF NOT EXISTS` statements once, safely from many processes.

        `ALTER TABLE t ADD COLUMN IF NOT EXISTS c TYPE` (PostgreSQL's form) migrates a
        database made before the column was added, in both dialects: SQLite has no
        `IF NOT EXISTS` there, so the column is added only when `PRAGMA table_info`
        lacks it (and a concurrent process adding it first is no error).
        """
        with self.transaction() as cursor:
            if self.postgres:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in statements:
                if not self.postgres and _ADD_COLUMN in statement:
                    _add_sqlite_column(cursor, statement)
                else:
                    cursor.execute(statement)

    def fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self.transaction() as cursor:  # ends the read transaction (PostgreSQL keeps it
            cursor.execute(sql, params)  # open otherwise); rolled back on errors
            return [tuple(row) for row in cursor.fetchall()]

    @contextlib.contextmanager
    def transaction(self, within_s: float | None = None) -> Iterator[Any]:
        """`with db.transaction() as cursor:` commits on success, rolls back on error;
        `within_s`: rolled back instead when the commit would come more than this many
        seconds after the transaction began (what a log write's `logged_at` relies on).

        Raises:
            StoreUnavailable: the connection failed or was lost (it is reopened at the
                next use), a statement timed out, or `deadline` (or `within_s`) passed
                before the commit.
        """
        bound = None if within_s is None else self._clock() + within_s
        conn = self.conn
        try:
            cursor = conn.cursor()
        except self._lost as exc:
            raise self._unavailable(exc) from exc
        try:
            yield cursor
            self._check_deadline(bound)
            conn.commit()
        except StoreUnavailable:
            self._rollback(conn)
            raise
        except self._lost as exc:
            raise self._unavailable(exc) from exc
        except BaseException:
            self._rollback(conn)
            raise
        finally:
            with contextlib.suppress(Exception):
                cursor.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _open(self) -> Any:
        now = self._clock()
        if now < self._retry_at:
            wait_s = self._retry_at - now
            raise StoreUnavailable(f"{self.name} is unavailable (reconnecting)", wait_s)
        try:
            conn = self._connect()
        except self._lost as exc:
            self._retry_at = self._clock() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, _BACKOFF_S[1])
            raise StoreUnavailable(f"{self.name} is unavailable: {_first_line(exc)}") from exc
        self._backoff_s = _BACKOFF_S[0]
        return conn

    def _check_deadline(self, bound: float | None = None) -> None:
        late = [t for t in (self.deadline, bound) if t is not None and self._clock() > t]
        if late:
            raise StoreUnavailable(f"{self.name} answered too late; the change was rolled back")

    def _rollback(self, conn: Any) -> None:
        try:
            conn.rollback()
        except self._lost:
            self._discard()
        except Exception:  # the first error is the one to report
            logger.debug("rollback failed", exc_info=True)

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The connection is lost: forget it (the next use opens another) and say so."""
        self._discard()
        return StoreUnavailable(f"{self.name} is unavailable: {_first_line(exc)}")

    def _discard(self) -> None:
        """Forget a broken connection; the next use opens a new one."""
        self.close()


_ADD_COLUMN = " ADD COLUMN IF NOT EXISTS "


def add_column(table: str, column: str, sql_type: str) -> str:
    """The idempotent migration statement `create_schema` runs in either dialect."""
    return f"ALTER TABLE {table}{_ADD_COLUMN}{column} {sql_type}"


def _add_sqlite_column(cursor: Any, statement: str) -> None:
    head, _, definition = statement.partition(_ADD_COLUMN)
    table, column = head.removeprefix("ALTER TABLE ").strip(), definition.split()[0]
    cursor.execute(f"PRAGMA table_info({table})")
    if any(row[1] == column for row in cursor.fetchall()):
        return
    try:
        cursor.execute(f"ALTER TABLE {table} ADD COLUMN {definition}")
    except sqlite3.OperationalError as exc:  # another process added it since
        if "duplicate column" not in str(exc):
            raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_sqlite(path: Path | None) -> Database:
    """A file in WAL mode (readers never block the writer; several processes may write,
    one at a time, each waiting up to `BUSY_TIMEOUT_S`), or in memory when `path` is None.
    A busy file past its timeout raises `StoreUnavailable` (SQLite's "database is locked");
    the connection is kept (it is not broken, and a memory database lives in it)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    target = ":memory:" if path is None else path
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    _use_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints
    name = "the SQLite log in memory" if path is None else f"the SQLite database {path.name}"
    return _SqliteDatabase(lambda: conn, "?", sqlite3.IntegrityError, name=name)


class _SqliteDatabase(Database):
    """SQLite's busy errors are 503s; its one connection is never discarded."""

    @contextlib.contextmanager
    def transaction(self, within_s: float | None = None) -> Iterator[Any]:
        try:
            with super().transaction(within_s) as cursor:
                yield cursor
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            raise StoreUnavailable(f"{self.name} is busy: {exc}") from exc


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


def postgres_parameters(url: str, timeouts: StoreTimeouts) -> dict[str, Any]:
    """libpq keywords for `url` with `timeouts` (the URL's own `options` are kept)."""
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(url)
    options = (
        f"-c statement_timeout={int(timeouts.statement_s * 1000)}"
        f" -c idle_in_transaction_session_timeout={int(timeouts.idle_in_transaction_s * 1000)}"
    ) + "".join(f" -c {name}={value}" for name, value in timeouts.settings)
    return {
        "connect_timeout": max(2, int(timeouts.connect_s)),
        "keepalives": 1,
        "keepalives_idle": timeouts.keepalive_idle_s,
        "keepalives_interval": timeouts.keepalive_interval_s,
        "keepalives_count": 3,
        **given,
        "options": f"{given.get('options', '')} {options}".strip(),
    }


def open_postgres(
    url: str, timeouts: StoreTimeouts = CONTROL_TIMEOUTS, lazy: bool = False
) -> Database:
    """A PostgreSQL database, connected now (so a wrong URL fails at start; at first use
    when `lazy`) and again after every connection error.

    Raises:
        StoreUnavailable: the first connection failed (not when `lazy`).
    """
    import psycopg  # only when PostgreSQL is configured

    parameters = postgres_parameters(url, timeouts)
    where = f"{parameters.get('host', 'localhost')}:{parameters.get('port', 5432)}"
    db = Database(
        lambda: psycopg.connect(**parameters),
        "%s",
        psycopg.IntegrityError,
        lost=(psycopg.OperationalError, psycopg.InterfaceError),
        name=f"PostgreSQL at {where}",
    )
    if not lazy:
        db.conn  # noqa: B018 - connect now
    return db


def open_database(
    database_url: str | None,
    data_dir: Path | None,
    timeouts: StoreTimeouts = CONTROL_TIMEOUTS,
    lazy: bool = False,
) -> Database:
    """`sqlite:///path`, `postgresql://...`, or None for `data_dir/predictions.sqlite3`
    (in memory, not kept and not shared, when `data_dir` is None too); `timeouts` and
    `lazy` as `open_postgres`.

    Raises:
        ValueError: `database_url` has another scheme.
        StoreUnavailable: PostgreSQL cannot be reached (not when `lazy`).
    """
    if database_url is None:
        return open_sqlite(None if data_dir is None else data_dir / SQLITE_FILE)
    if database_url.startswith("sqlite:///"):
        return open_sqlite(Path(database_url.removeprefix("sqlite:///")))
    if database_url.startswith(("postgresql://", "postgres://")):
        return open_postgres(database_url, timeouts, lazy)
    raise ValueError(f"database_url must be sqlite:///PATH or postgresql://..., got {database_url}")
