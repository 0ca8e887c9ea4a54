"""The control plane's database connection, its change counter and the follower task.

Routing policy layers and experiments' state change rarely and are read on every
request, by every worker process and replica. Each process keeps them in memory and
re-reads them when the `control_revision` counter moves: every write bumps it in the
same transaction, and a follower task reads it every `poll_s` (0.25 s by default), so a
change made through any process is in force in all of them within about that time, and
survives restarts because the database is its home. Polling one row works on SQLite and
PostgreSQL alike; a read costs well under a millisecond.

Store calls run on one thread of their own (not the prediction log's), so the event loop
never waits for the database and a busy log never delays an admin change. Each call after
`start` is bounded by `call_timeout_s` (`StoreThread`): a database that is down or hung
answers `StoreUnavailable` (503) within it, and the connection is reopened with backoff
by the next call (`Database`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from gateway.control.database import Database, StoreUnavailable
from gateway.control.thread import StoreThread

logger = logging.getLogger(__name__)
T = TypeVar("T")
Reload = Callable[[Database], None]

CALL_TIMEOUT_S = 1.5  # an admin call through a hung database answers 503 after this
REVISION_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS control_revision (
        id INTEGER PRIMARY KEY, revision BIGINT NOT NULL)""",
    "INSERT INTO control_revision (id, revision) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
)


def bump_revision(cursor: Any) -> None:
    """Inside a write's transaction: tell every process to re-read."""
    cursor.execute("UPDATE control_revision SET revision = revision + 1 WHERE id = 1")


def read_revision(db: Database) -> int:
    return int(db.fetch("SELECT revision FROM control_revision WHERE id = 1")[0][0])


class ControlPlane:
    """One connection on one thread; followers re-read their snapshot on every change.

    Args:
        open_database: builds the connection (called on the control thread at `start`).
        poll_s: seconds between two reads of the change counter.
        call_timeout_s: the longest a caller waits for one call after `start` (seconds).
    """

    def __init__(
        self,
        open_database: Callable[[], Database],
        poll_s: float = 0.25,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self._open = open_database
        self._poll_s = poll_s
        self._timeout_s = call_timeout_s
        self._thread = StoreThread("control-plane")
        self._db: Database | None = None
        self._schema: list[str] = list(REVISION_SCHEMA)
        self._followers: list[Reload] = []
        self._task: asyncio.Task[None] | None = None
        self.revision = -1
        self.available = True  # the follower's last read succeeded

    def add_schema(self, schema: Sequence[str]) -> None:
        """Before `start`: tables no follower re-reads (e.g. a lease; see `transact`)."""
        self._schema.extend(schema)

    def follow(self, reload: Reload, schema: Sequence[str] = ()) -> None:
        """Before `start`: create `schema`, and call `reload(db)` (on the control thread)
        at start and after every change. `reload` swaps in a new snapshot in one assignment,
        so the event loop reads either the old or the new one, never a mix."""
        self._schema.extend(schema)
        self._followers.append(reload)

    async def start(self) -> None:
        """Open the database, create the schema, read every follower's snapshot (unbounded
        but for the connection's own timeouts: a gateway does not start without them)."""
        self._db = await self._thread.call(self._open, None)
        db = self._db
        await self._thread.call(lambda: db.create_schema(self._schema), None)
        await self._thread.call(lambda: self._reload(db), None)
        self._task = asyncio.create_task(self._follow(), name="control-plane-follower")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):  # a hung database: leave the thread behind
                await self._thread.call(db.close, self._timeout_s)
        self._thread.shutdown(wait=False)

    @property
    def integrity_error(self) -> type[Exception]:
        """The driver's exception for a violated constraint (SQLite's or psycopg's)."""
        return self._require().integrity_error

    async def read(self, call: Callable[..., T], *args: Any) -> T:
        """`call(db, *args)` on the control thread."""
        db = self._require()
        return await self._call(lambda: call(db, *args))

    async def write(self, call: Callable[..., T], *args: Any) -> T:
        """`call(db, cursor, *args)` in one transaction that also bumps the revision; this
        process re-reads before returning, so its own change is in force when it returns.

        Raises:
            Whatever `call` raises (the transaction is rolled back).
        """
        db = self._require()
        return await self._call(self._write, db, call, args)

    async def transact(self, call: Callable[..., T], *args: Any) -> T:
        """`call(db, cursor, *args)` in one transaction that changes no followed state:
        no revision bump, no re-read (a lease renewed every second must not make every
        process re-read its snapshots every second)."""
        db = self._require()
        return await self._call(self._transact, db, call, args)

    async def refresh(self) -> None:
        """Re-read now if the revision moved (the follower does this every `poll_s`)."""
        db = self._require()
        await self._call(self._refresh, db)

    def _write(self, db: Database, call: Callable[..., T], args: tuple[Any, ...]) -> T:
        with db.transaction() as cursor:
            result = call(db, cursor, *args)
            bump_revision(cursor)
        self._reload(db)
        return result

    def _transact(self, db: Database, call: Callable[..., T], args: tuple[Any, ...]) -> T:
        with db.transaction() as cursor:
            return call(db, cursor, *args)

    def _refresh(self, db: Database) -> None:
        if read_revision(db) != self.revision:
            self._reload(db)

    def _reload(self, db: Database) -> None:
        revision = read_revision(db)  # first: a write landing meanwhile moves it again
        for reload in self._followers:
            reload(db)
        self.revision = revision

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.refresh()
            except StoreUnavailable as exc:  # restarting or hung: keep the last snapshot
                if self.available:
                    logger.warning("control plane: %s; keeping the last snapshot", exc.message)
                self.available = False
                continue
            except Exception:
                logger.exception("control plane: reading the change counter failed")
                continue
            if not self.available:
                logger.warning("control plane: the database answers again")
            self.available = True

    async def _call(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` on the control thread, within `call_timeout_s`.

        Raises:
            StoreUnavailable: the database is down, hung or slower than the bound.
        """
        return await self._thread.call(lambda: call(*args), self._timeout_s, self._db)

    def _require(self) -> Database:
        if self._db is None:
            raise RuntimeError("the control plane is not started")
        return self._db
