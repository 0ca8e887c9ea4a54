"""The prediction log sink: `submit()` never waits; a background task writes in batches.

`submit` puts the outcome on a bounded queue and returns; a full queue drops the
record and counts it (`dropped`). The writer task drains the queue in batches and runs
every store call on one worker thread, so the event loop never blocks on storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.experiments.records import Outcome, Row, to_row
from gateway.experiments.store import LogStore

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class LogCounters:
    submitted: int = 0
    written: int = 0
    dropped: int = 0
    write_errors: int = 0


class PredictionLog:
    """Bounded queue + one writer task + one storage thread.

    Args:
        open_store: builds the store (called on the storage thread at `start`).
        on_written: called on the event loop with every written batch's rows.
        linger_s: after the first record of a batch, wait this long for more.
    """

    def __init__(
        self,
        open_store: Callable[[], LogStore],
        queue_size: int,
        batch_size: int,
        linger_s: float,
        on_written: Callable[[Sequence[Row]], None] | None = None,
    ) -> None:
        self._open_store = open_store
        self._queue: asyncio.Queue[Outcome] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._on_written = on_written
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prediction-log")
        self._store: LogStore | None = None
        self._task: asyncio.Task[None] | None = None
        self.counters = LogCounters()

    def submit(self, outcome: Outcome) -> bool:
        """Queue one record; False (and counted) when the queue is full. Never blocks."""
        try:
            self._queue.put_nowait(outcome)
        except asyncio.QueueFull:
            self.counters.dropped += 1
            if self.counters.dropped == 1:
                logger.warning("prediction log queue is full; dropping records (counted)")
            return False
        self.counters.submitted += 1
        return True

    async def start(self) -> None:
        self._store = await self.run_raw(self._open_store)
        self._task = asyncio.create_task(self._write_loop(), name="prediction-log-writer")

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """Run `call(store, *args)` on the storage thread (reads, feedback, events)."""
        store = self._store
        if store is None:
            raise RuntimeError("the prediction log is not started")
        return await self.run_raw(lambda: call(store, *args))

    async def run_raw(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def flush(self) -> None:
        """Wait until everything submitted so far is written (or failed to be)."""
        if self._task is not None:
            await self._queue.join()

    async def aclose(self, timeout: float = 5.0) -> None:
        """Write what is queued (for at most `timeout` seconds), then close the store."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._store is not None:
            await self.run_raw(self._store.close)
            self._store = None
        self._thread.shutdown(wait=True)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._linger_s and self._queue.qsize() < self._batch_size:
                await asyncio.sleep(self._linger_s)  # let a small batch grow
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[Outcome]) -> None:
        store = self._store
        assert store is not None
        try:
            rows = await self.run_raw(lambda: _convert_and_write(store, batch))
        except Exception:  # a failing store must not stop the writer; it is counted
            self.counters.write_errors += len(batch)
            logger.exception("prediction log write of %d records failed", len(batch))
            return
        self.counters.written += len(rows)
        if self._on_written is not None:
            self._on_written(rows)


def _convert_and_write(store: LogStore, batch: list[Outcome]) -> list[Row]:
    # On the storage thread: top-1 and key hashing stay off the event loop.
    rows = [to_row(outcome) for outcome in batch]
    store.write_batch(rows)
    return rows
