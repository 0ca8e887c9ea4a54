"""One thread per database connection, and a bound on how long a caller waits for it.

A database that hangs (its server stopped, a lock held, the network silent) must cost a
caller a bounded wait and a clear 503, never an unbounded one (issue 24). The event loop
waits for a call at most `timeout_s`, then answers `StoreUnavailable`; the thread may
still be inside the call, so the call is told the same deadline (`Database.deadline`: a
transaction still open then is rolled back, not committed), and a call that reaches the
thread after its deadline (queued behind a hung one) is not run at all. So a change whose
client was answered 503 is not applied later, when the database wakes up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from gateway.control.database import Database, StoreUnavailable

T = TypeVar("T")


class StoreThread:
    """Runs calls on one thread, each within a deadline.

    Args:
        name: the thread's name prefix.
        store: how a 503 names the store when no `Database` is at hand.
    """

    def __init__(self, name: str, store: str = "the experiments database") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.store = store

    async def call(
        self, call: Callable[[], T], timeout_s: float | None, db: Database | None = None
    ) -> T:
        """`call()` on the thread; with `timeout_s`, wait at most that long.

        Raises:
            StoreUnavailable: the call did not finish in `timeout_s` (it is abandoned:
                skipped if it had not started, its transaction rolled back if it had).
            Whatever `call` raises.
        """
        loop = asyncio.get_running_loop()
        if timeout_s is None:
            return await loop.run_in_executor(self._executor, call)
        deadline = time.monotonic() + timeout_s
        future = loop.run_in_executor(self._executor, _bounded, call, deadline, db, self.store)
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that arrives as the call finishes (CPython gh-86296), and a
            # writer task cancelled at close would then wait for work forever.
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            store = self.store if db is None else db.name
            raise StoreUnavailable(f"{store} did not answer within {timeout_s:g} s") from None

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)


def _bounded(call: Callable[[], T], deadline: float, db: Database | None, store: str) -> T:
    """On the thread: skip a call whose caller stopped waiting; bound its transaction."""
    if time.monotonic() > deadline:
        raise StoreUnavailable(f"{store} was busy; the call was given up before it ran")
    if db is None:
        return call()
    db.deadline = deadline
    try:
        return call()
    finally:
        db.deadline = None
