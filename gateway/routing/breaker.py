"""A circuit breaker per backend: stop calling a backend that keeps failing, probe later.

The only way through a breaker is `CircuitBreaker.call`, which settles every call it
admits on every exit path. The half-open probe slot in particular is released when the
probe succeeds, fails, raises anything at all, or is cancelled (a gRPC client deadline
cancels the handler's task mid-call): a breaker whose probe slot leaked would refuse its
arm for good while looking half-open (issue 14 reproduced exactly that).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import TypeVar

from gateway.core.errors import (
    BreakerOpen,
    DeadlineExceeded,
    NotFound,
    Overloaded,
    UpstreamRejected,
)
from gateway.settings import BreakerSettings

T = TypeVar("T")

HEALTHY_ERRORS: tuple[type[Exception], ...] = (UpstreamRejected, NotFound)
"""Errors that prove the backend answered: the request was bad, the backend is fine."""

NEUTRAL_ERRORS: tuple[type[Exception], ...] = (DeadlineExceeded, Overloaded)
"""Errors that say nothing of the backend: the client's deadline ran out first, or the
gateway's own admission control refused the call. No verdict (a probe slot is freed)."""


class BreakerState(IntEnum):
    """Values exported as the `dualserve_breaker_state` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class _Probe:
    """The token of the one call admitted while half-open."""


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `reset_after_s` one
    probe call is let through (half-open): success closes it, failure re-opens it, a
    cancelled probe leaves it half-open with the slot free for the next call.

    Args:
        settings: the threshold and the open time.
        backend: the name put in `BreakerOpen` errors (the arm, e.g. "pytorch").
        clock: monotonic seconds; injectable so tests need no sleeps.
    """

    def __init__(
        self,
        settings: BreakerSettings,
        backend: str = "upstream",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._backend = backend
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe: _Probe | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._settings.reset_after_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def accepting(self) -> bool:
        """Would a call be let through now? False while open and while a half-open probe
        is out: readiness reports such an arm not ready."""
        state = self.state
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and self._probe is None
        )

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt()` through the breaker and settle its outcome.

        `HEALTHY_ERRORS` and a result count as success; `NEUTRAL_ERRORS` give no verdict;
        any other `Exception` counts as a failure; a cancellation (or any other
        `BaseException`) gives no verdict. In every case a probe slot taken by this call
        is released.

        Raises:
            BreakerOpen: the breaker refuses calls now (nothing was attempted).
            Whatever `attempt()` raises, unchanged.
        """
        probe = self._admit()
        try:
            result = await attempt()
        except HEALTHY_ERRORS:
            self._succeeded()
            raise
        except NEUTRAL_ERRORS:
            raise
        except Exception:
            self._failed()
            raise
        finally:
            if probe is not None and self._probe is probe:
                self._probe = None
        self._succeeded()
        return result

    def _admit(self) -> _Probe | None:
        """None for a call while closed, a fresh probe token while half-open."""
        state = self.state
        if state is BreakerState.CLOSED:
            return None
        if state is BreakerState.HALF_OPEN and self._probe is None:
            self._probe = _Probe()
            return self._probe
        raise BreakerOpen(self._backend, "circuit breaker is open after repeated failures")

    def _succeeded(self) -> None:
        self._failures, self._opened_at = 0, None

    def _failed(self) -> None:
        self._failures += 1
        if self._opened_at is not None or self._failures >= self._settings.failure_threshold:
            self._opened_at = self._clock()
