"""Round-robin over one backend's replicas, skipping the ones that just failed.

A replica is marked unhealthy for `unhealthy_for_s` when a call to it fails at the
connection level (`UpstreamUnavailable`: refused, reset, gRPC UNAVAILABLE); the same call
then moves on to the next healthy replica within what is left of its deadline, if the
retry budget allows. Anything else (a timeout, a rejected request, a backend error) is
raised at once: a request that may have reached a backend is never sent twice. A replica
that keeps failing is ejected for a while (`resilience.OutlierDetector`).

An attempt given less than `min_verdict_s` (the caller's deadline nearly spent: a 1 ms
gRPC `timeout`, `grpc-timeout: 1m`) says nothing about the replica, whatever it ends in
(a gRPC UNAVAILABLE or a reset while the call is torn down at its deadline included): the
replica is neither marked down nor counted by the outlier detector, and the caller gets
`UpstreamTimeout` (504), as Envoy and gRPC leave a deadline the client spent out of
`outlier_detection`. Issue 24 saw such 1 ms calls mark the TF replica unhealthy for 2 s.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from gateway.core.errors import (
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.upstreams.resilience import OutlierDetector, RetryBudget

T = TypeVar("T")
R = TypeVar("R")
Clock = Callable[[], float]
_FIRST = (0,)


class ReplicaPool(Generic[T]):
    """Pick replicas of one backend in turn; `call` retries only connection failures.

    Args:
        backend: the framework name, used in error messages.
        replicas: per-replica clients (channels, base URLs, ...), at least one.
        unhealthy_for_s: how long a replica is skipped after a connection failure.
        clock: a monotonic clock, injectable for tests.
        budget: bounds the retries (default: 20% of calls plus 3 per second).
        outliers: ejects replicas that keep failing (default: 5 in a row, 5 s and up).
        min_verdict_s: an attempt given fewer seconds than this is not a verdict on its
            replica (the caller's deadline, not the backend; 0: every attempt counts).
    """

    def __init__(
        self,
        backend: str,
        replicas: Sequence[T],
        unhealthy_for_s: float,
        clock: Clock = time.monotonic,
        budget: RetryBudget | None = None,
        outliers: OutlierDetector | None = None,
        min_verdict_s: float = 0.0,
    ) -> None:
        if not replicas:
            raise ValueError(f"{backend}: no replica addresses configured")
        self.backend = backend
        self.replicas = list(replicas)
        self.unhealthy_for_s = unhealthy_for_s
        self._clock = clock
        self._next = 0
        self._down_until = [0.0] * len(self.replicas)
        self.budget = budget or RetryBudget(clock=clock)
        self.outliers = outliers or OutlierDetector(len(self.replicas), clock=clock)
        self.min_verdict_s = min_verdict_s

    def healthy(self) -> list[T]:
        """Healthy replicas in the order the next call tries them (advances the rotation)."""
        return [self.replicas[i] for i in self._healthy_indices()]

    def _healthy_indices(self) -> Sequence[int]:
        count, now = len(self._down_until), self._clock()
        if count == 1:  # the common deployment: no rotation, no lists
            return _FIRST if self._down_until[0] <= now and not self.outliers.ejected(0) else ()
        start = self._next
        self._next = (start + 1) % count
        order = [(start + i) % count for i in range(count)]
        return [i for i in order if self._down_until[i] <= now and not self.outliers.ejected(i)]

    def mark_unhealthy(self, replica: T) -> None:
        self._mark_down(self.replicas.index(replica))

    def _mark_down(self, index: int) -> None:
        self._down_until[index] = self._clock() + self.unhealthy_for_s

    async def call(self, attempt: Callable[[T, float], Awaitable[R]], timeout: float) -> R:
        """`attempt(replica, seconds_left)` on healthy replicas until one answers.

        Raises:
            UpstreamUnavailable: no replica is healthy, or every one failed to connect.
            UpstreamTimeout: the deadline passed while moving between replicas, or an
                attempt given less than `min_verdict_s` failed (no verdict on its replica).
            GatewayError: whatever a replica's attempt raised, other than unavailability.
        """
        deadline = self._clock() + timeout
        last: UpstreamUnavailable | None = None
        candidates = self._healthy_indices()
        self.budget.deposit()
        for tried, index in enumerate(candidates):
            left = deadline - self._clock()
            if left <= 0:
                raise UpstreamTimeout(self.backend, f"no answer within {timeout:g} s") from last
            if tried and not self.budget.try_withdraw():
                raise self._none_left(tried, last, "retry budget spent") from last
            try:
                answer = await attempt(self.replicas[index], left)
            except UpstreamRejected:
                self.outliers.record_success(index)  # it answered
                raise
            except UpstreamError as exc:
                if left < self.min_verdict_s:  # the caller's deadline, not the replica
                    raise self._spent(left, exc) from exc
                if not isinstance(exc, UpstreamUnavailable):
                    self.outliers.record_failure(index)
                    raise
                self._mark_down(index)
                self.outliers.record_failure(index)
                last = exc
                continue
            self.outliers.record_success(index)
            return answer
        raise self._none_left(len(candidates), last) from last

    def _spent(self, left: float, exc: UpstreamError) -> UpstreamTimeout:
        if isinstance(exc, UpstreamTimeout):
            return exc
        reason = exc.message.removeprefix(f"{self.backend}: ")
        return UpstreamTimeout(
            self.backend, f"the caller's deadline left {left * 1000:.1f} ms ({reason})"
        )

    def _none_left(
        self, tried: int, last: UpstreamUnavailable | None, why: str | None = None
    ) -> UpstreamUnavailable:
        total = len(self.replicas)
        if why is not None:
            detail = f"{tried} of {total} tried, then {why}"
        elif last is None:
            detail = f"all {total} marked unhealthy for up to {self.unhealthy_for_s:g} s"
        else:
            reason = last.message.removeprefix(f"{self.backend}: ")
            detail = f"{tried} of {total} tried, last: {reason}"
        return UpstreamUnavailable(self.backend, f"no healthy replica ({detail})")
