"""Admission control: shed load before doing any work, instead of queueing without bound.

A gateway that queues every request it accepts turns overload into latency for everyone:
measured here before this module, 512 closed-loop clients against one worker gave an
accepted p99 of 589-774 ms against 85 ms at 16 clients, and memory grew with the queue.
TF Serving answers a full batching queue with UNAVAILABLE and TorchServe a full job queue
with 503; Envoy's overload manager and circuit breakers (`max_requests`, `max_pending`)
refuse at a fixed concurrency. The gateway does the same, per worker process:

- `Admission` bounds the requests in flight in this worker. Past the bound a request is
  refused with `Overloaded` (HTTP 429 with `Retry-After`, gRPC RESOURCE_EXHAUSTED) before
  its body is read or decoded, so a refusal costs microseconds and no memory.
- `gateway.upstreams.limited.LimitedUpstream` bounds the calls in flight to one backend
  kind (both arms' upstream calls, shadow copies included) with an `Admission` of its own,
  so one slow backend cannot take every slot.

`Admission.hold` is the one place a slot is taken and given back: the edge
(`gateway.edge.boundary.Edge`, for REST and gRPC alike) and the upstream wrapper call it.

Little's law sizes the default: one worker answers ~1,300 req/s at saturation on this
2-core machine (`benchmarks.gateway`), so 32 requests in flight is ~25 ms of queue:
enough to keep the worker busy, small enough that an accepted request is never kept
waiting behind hundreds of others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from gateway.core.errors import Overloaded

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class AdmissionCounters:
    """What `/metrics` and the tests read: admitted and refused requests."""

    admitted: int = 0
    refused: int = 0


class Admission:
    """A bound on the requests in flight in one worker (single-threaded: the event loop).

    Args:
        limit: requests in flight at most; the next one is refused.
        retry_after_s: what `Retry-After` tells a refused client (whole seconds, >= 1).
        what: what is full, as a refusal names it.
        setting: the setting that bounds it, as a refusal names it.
    """

    def __init__(
        self,
        limit: int,
        retry_after_s: float = 1.0,
        what: str = "the gateway",
        setting: str = "admission.max_in_flight",
    ) -> None:
        if limit < 1:
            raise ValueError(f"the in-flight limit must be at least 1, got {limit}")
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.what = what
        self.setting = setting
        self.in_flight = 0
        self.counters = AdmissionCounters()

    def acquire(self) -> None:
        """Take one slot; `release()` gives it back.

        Raises:
            Overloaded: every slot is taken (nothing has been read or decoded yet); the
                message names what is full and the setting that bounds it.
        """
        if self.in_flight >= self.limit:
            self.counters.refused += 1
            raise Overloaded(
                f"{self.what} has {self.in_flight} requests in flight, its limit"
                f" ({self.setting} = {self.limit}); retry after {self.retry_after_s:g} s",
                retry_after_s=self.retry_after_s,
            )
        self.in_flight += 1
        self.counters.admitted += 1

    def release(self) -> None:
        self.in_flight -= 1

    async def hold(
        self, call: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """`await call(*args, **kwargs)` holding one slot, given back however it ends.

        The hot path's form (a coroutine, not `admitted()`: a generator context manager
        costs ~1 us a call).

        Raises:
            Overloaded: every slot is taken; `call` is not called (see `acquire`).
        """
        self.acquire()
        try:
            return await call(*args, **kwargs)
        finally:
            self.release()

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold one slot for the body of the `with` block (see `acquire`)."""
        self.acquire()
        try:
            yield
        finally:
            self.release()
