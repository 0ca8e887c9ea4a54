"""Server-side batching: merge concurrent requests for one signature, run once, split back.

Semantics follow TF Serving's BatchingSession: a batch closes when it reaches
`max_batch_size` examples or `batch_timeout_micros` after its first task; at most
`max_enqueued_batches` batches may wait per queue (then UNAVAILABLE, "queue full"); up to
`num_batch_threads` batches run at once, in a thread pool off the event loop. One queue
per (model, version, signature, input names, outputs): only identical calls merge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from backends.tfserving.aux_config import BatchingParameters
from backends.tfserving.server.errors import InvalidArgument, Unavailable

RunFn = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


@dataclass
class _Task:
    inputs: Mapping[str, np.ndarray]
    size: int
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class _Batch:
    run: RunFn
    model: str
    tasks: list[_Task] = field(default_factory=list)
    size: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass
class _Queue:
    open: _Batch | None = None
    waiting: int = 0  # closed batches not yet running


class BatchScheduler:
    """Batches tasks per key; `submit` returns that task's slice of the batch outputs."""

    def __init__(
        self,
        params: BatchingParameters,
        on_batch: Callable[[str, int, Sequence[float]], None] | None = None,
    ) -> None:
        self.params = params
        self._queues: dict[Hashable, _Queue] = {}
        self._executor = ThreadPoolExecutor(params.num_batch_threads, "tfs-batch")
        self._slots = asyncio.Semaphore(params.num_batch_threads)
        self._running: set[asyncio.Task[None]] = set()  # strong refs until done
        self._on_batch = on_batch or (lambda model, size, waits: None)

    async def submit(
        self, key: Hashable, model: str, run: RunFn, inputs: Mapping[str, np.ndarray], size: int
    ) -> dict[str, np.ndarray]:
        """Queue one task of `size` examples; `run` computes a merged batch (thread pool)."""
        if size > self.params.max_batch_size:
            raise InvalidArgument(
                f"Task size {size} is larger than maximum input batch size "
                f"{self.params.max_batch_size}"
            )
        limit = self.params.execution_limit
        if size > limit:
            return await self._submit_split(key, model, run, inputs, size, limit)
        queue = self._queues.setdefault(key, _Queue())
        if queue.open is not None and queue.open.size + size > limit:
            self._close(queue)
        if queue.open is None:
            queue.open = self._open(queue, run, model)
        task = _Task(inputs, size, asyncio.get_running_loop().create_future())
        queue.open.tasks.append(task)
        queue.open.size += size
        if queue.open.size >= limit:
            self._close(queue)
        return await task.future

    async def _submit_split(
        self, key: Hashable, model: str, run: RunFn, inputs: Mapping[str, np.ndarray],
        size: int, limit: int,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """Large batch splitting: run a big request as several execution batches."""
        starts = range(0, size, limit)
        parts = await asyncio.gather(*(
            self.submit(key, model, run, {n: v[i : i + limit] for n, v in inputs.items()},
                        min(limit, size - i))
            for i in starts
        ))  # fmt: skip
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _open(self, queue: _Queue, run: RunFn, model: str) -> _Batch:
        # The open batch counts against the bound too, as in TF Serving's queue.
        if queue.waiting + 1 > self.params.max_enqueued_batches:
            raise Unavailable(QUEUE_FULL)
        batch = _Batch(run, model)
        delay = self.params.batch_timeout_micros / 1e6
        batch.timer = asyncio.get_running_loop().call_later(delay, self._close_if, queue, batch)
        return batch

    def _close_if(self, queue: _Queue, batch: _Batch) -> None:
        if queue.open is batch:
            self._close(queue)

    def _close(self, queue: _Queue) -> None:
        batch, queue.open = queue.open, None
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        queue.waiting += 1
        job = asyncio.get_running_loop().create_task(self._process(queue, batch))
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    async def _process(self, queue: _Queue, batch: _Batch) -> None:
        async with self._slots:
            queue.waiting -= 1
            started = time.perf_counter()
            waits = [started - t.enqueued for t in batch.tasks]
            try:
                merged = merge_inputs([t.inputs for t in batch.tasks])
                loop = asyncio.get_running_loop()
                outputs = await loop.run_in_executor(self._executor, batch.run, merged)
                self._on_batch(batch.model, batch.size, waits)
                _deliver(batch.tasks, outputs)
            except Exception as exc:  # every task of a failed batch gets the error
                for task in batch.tasks:
                    if not task.future.done():
                        task.future.set_exception(exc)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def merge_inputs(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate each named input along the batch dimension."""
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def split_outputs(
    outputs: Mapping[str, np.ndarray], sizes: Sequence[int]
) -> list[dict[str, np.ndarray]]:
    """The inverse of merge_inputs: one dict of output slices per task."""
    offsets = np.cumsum([0, *sizes])
    return [
        {name: value[offsets[i] : offsets[i + 1]] for name, value in outputs.items()}
        for i in range(len(sizes))
    ]


def _deliver(tasks: Sequence[_Task], outputs: Mapping[str, np.ndarray]) -> None:
    parts = split_outputs(outputs, [t.size for t in tasks]) if len(tasks) > 1 else [outputs]
    for task, part in zip(tasks, parts, strict=True):
        if not task.future.done():  # the client may have gone away (cancelled)
            task.future.set_result(dict(part))
