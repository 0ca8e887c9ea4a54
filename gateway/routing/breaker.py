"""A circuit breaker per backend: stop calling a backend that keeps failing, probe later."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import IntEnum

from gateway.errors import UpstreamUnavailable
from gateway.settings import BreakerSettings


class BreakerOpen(UpstreamUnavailable):
    """Refused without calling the backend: its breaker is open (503, like any
    unavailable backend; its own class so outcomes name the reason)."""


class BreakerState(IntEnum):
    """Values exported as the `dualserve_breaker_state` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `reset_after_s` one
    probe call is let through (half-open): success closes it, failure re-opens it."""

    def __init__(
        self, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._settings.reset_after_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures, self._opened_at, self._probing = 0, None, False

    def record_failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._opened_at is not None or self._failures >= self._settings.failure_threshold:
            self._opened_at = self._clock()
