"""Shadow traffic: mirror a sample of requests to the other framework and compare outputs.

The client's reply never waits for the mirror: copies go into a bounded queue (a full
queue drops the copy and counts it) and background workers call the shadow arm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from gateway.errors import GatewayError
from gateway.experiments.stats import ExperimentStats
from gateway.types import Framework, InferRequest, InferResponse

logger = logging.getLogger(__name__)

ShadowCall = Callable[[Framework, InferRequest], Awaitable[InferResponse]]
# (shadow arm, request, shadow answer or None on error, seconds, comparison or None)
ShadowObserver = Callable[
    [Framework, InferRequest, "InferResponse | GatewayError", float, "Comparison | None"], None
]


@dataclass(frozen=True)
class Comparison:
    agreed: bool
    max_abs_diff: float


def compare(primary: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> Comparison:
    """Top-1 agreement on `class` (or the argmax of `probabilities`) and the largest
    absolute difference of `probabilities`."""
    agreed = bool(np.array_equal(_top1(primary), _top1(shadow)))
    diff = 0.0
    if "probabilities" in primary and "probabilities" in shadow:
        diff = float(np.max(np.abs(primary["probabilities"] - shadow["probabilities"])))
    return Comparison(agreed, diff)


def _top1(outputs: dict[str, np.ndarray]) -> np.ndarray:
    if "class" in outputs:
        return np.asarray(outputs["class"]).reshape(-1)
    return np.argmax(outputs["probabilities"], axis=-1)


class ShadowMirror:
    """Bounded queue + worker tasks; `start()` in the app's lifespan, `aclose()` at exit."""

    def __init__(
        self,
        call: ShadowCall,
        stats: ExperimentStats,
        queue_size: int,
        workers: int = 2,
        on_result: Callable[[str, Comparison | None], None] | None = None,
    ) -> None:
        self._call = call
        self._stats = stats
        self._queue: asyncio.Queue[tuple[Framework, InferRequest, InferResponse]] = asyncio.Queue(
            maxsize=queue_size
        )
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._on_result = on_result
        self.on_call: ShadowObserver | None = None  # set by the experiments room

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    def submit(self, arm: Framework, request: InferRequest, answer: InferResponse) -> bool:
        """Queue a mirrored call; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait((arm, request, answer))
        except asyncio.QueueFull:
            self._stats.shadow(request.model).dropped += 1
            self._report(request.model, None)
            return False
        return True

    async def drain(self) -> None:
        """Wait until every queued copy has been compared (used by tests and shutdown)."""
        await self._queue.join()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _work(self) -> None:
        while True:
            arm, request, answer = await self._queue.get()
            try:
                await self._mirror(arm, request, answer)
            finally:
                self._queue.task_done()

    async def _mirror(self, arm: Framework, request: InferRequest, answer: InferResponse) -> None:
        started = time.perf_counter()
        try:
            shadow = await self._call(arm, request)
        except GatewayError as exc:
            self._stats.shadow(request.model).errors += 1
            logger.debug("shadow call to %s failed: %s", arm, exc)
            self._observe(arm, request, exc, started, None)
            return
        result = compare(answer.outputs, shadow.outputs)
        self._stats.record_shadow(request.model, result.agreed, result.max_abs_diff)
        self._report(request.model, result)
        self._observe(arm, request, shadow, started, result)

    def _observe(
        self,
        arm: Framework,
        request: InferRequest,
        shadow: InferResponse | GatewayError,
        started: float,
        result: Comparison | None,
    ) -> None:
        if self.on_call is not None:
            self.on_call(arm, request, shadow, time.perf_counter() - started, result)

    def _report(self, model: str, result: Comparison | None) -> None:
        if self._on_result is not None:
            self._on_result(model, result)
