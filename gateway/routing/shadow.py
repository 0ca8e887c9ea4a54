"""Shadow traffic off the reply's path: a bounded queue of mirrored calls and its workers.

The router hands each mirrored call over as a job (it calls the shadow arm, compares,
and emits the call's outcome); the client's reply never waits for it. A full queue drops
the job and tells `on_dropped` (live statistics and metrics count drops). The mirror is
built in the composition root (`gateway.app.build_context`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from gateway.core.outcome import Comparison, compare

__all__ = ["Comparison", "ShadowMirror", "compare"]  # metrics import Comparison from here
logger = logging.getLogger(__name__)
Job = Callable[[], Awaitable[None]]


class ShadowMirror:
    """Bounded queue + worker tasks; `start()` in the app's lifespan, `aclose()` at exit.

    Args:
        queue_size: jobs waiting at most; one more is dropped.
        on_dropped: observers called with the model of every dropped job.
        workers: concurrent mirrored calls.
    """

    def __init__(
        self, queue_size: int, on_dropped: Sequence[Callable[[str], None]] = (), workers: int = 2
    ) -> None:
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)
        self._on_dropped = tuple(on_dropped)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    def submit(self, model: str, job: Job) -> bool:
        """Queue a mirrored call; False (and observed) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            for observer in self._on_dropped:
                observer(model)
            return False
        return True

    async def drain(self) -> None:
        """Wait until every queued call has run (used by tests and shutdown)."""
        await self._queue.join()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await job()
            except Exception:  # a failing job must not stop the worker
                logger.exception("shadow call failed")
            finally:
                self._queue.task_done()
