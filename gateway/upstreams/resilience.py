"""Retry budgets and outlier ejection for one backend's replicas.

`ReplicaPool` retries a call on the next replica only when the first could not have
reached a backend (connection refused or reset). Two rules keep that from making an
outage worse, both from Envoy (cluster `retry_budget`, `outlier_detection`) and Finagle
(`RetryBudget`):

- `RetryBudget`: every call deposits `ratio` of a token and every retry withdraws one, on
  top of a small reserve refilled at `min_per_s`; a retry without a token is not made. So
  retries stay under ~`ratio` of the traffic however many replicas fail at once.
- `OutlierDetector`: a replica that fails `consecutive` times in a row is ejected for
  `base_ejection_s` times the number of its ejections so far (capped at
  `max_ejection_s`), then returns on probation; a success resets its count. The last
  replica that is not ejected is never ejected: with all of them failing, the breaker
  above the pool decides, not the pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


class RetryBudget:
    """A token bucket of retries (Finagle's `RetryBudget`, Envoy's `retry_budget`).

    Args:
        ratio: tokens each call deposits (0.2: retries up to 20% of calls).
        min_per_s: reserve refill, so a quiet backend may still retry.
        clock: monotonic seconds, injectable for tests.
    """

    def __init__(self, ratio: float = 0.2, min_per_s: float = 3.0, clock: Clock = time.monotonic):
        self.ratio = ratio
        self.min_per_s = min_per_s
        self._clock = clock
        self._tokens = min_per_s  # one second's reserve to start with
        self._cap = max(10.0, 10 * min_per_s)
        self._last = clock()
        self._deposits = 0
        self.refused = 0

    def deposit(self) -> None:
        """A call was made (counted now, added when a retry asks: every call pays this)."""
        self._deposits += 1

    def try_withdraw(self) -> bool:
        """May one retry be made now? (It is counted in `refused` when not.)"""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.refused += 1
        return False

    def _refill(self) -> None:
        # Deposits and the reserve only add between withdrawals, so adding their sum under
        # one cap gives what capping after each would.
        now = self._clock()
        added = self._deposits * self.ratio + (now - self._last) * self.min_per_s
        self._tokens = min(self._cap, self._tokens + added)
        self._deposits = 0
        self._last = now


@dataclass
class _Record:
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0


class OutlierDetector:
    """Consecutive-failure ejection per replica (Envoy's `consecutive_5xx` detector).

    Args:
        replicas: how many replicas the pool has (indices 0..n-1).
        consecutive: failures in a row that eject a replica.
        base_ejection_s: the first ejection's length; the k-th lasts k times as long.
        max_ejection_s: no ejection lasts longer.
        clock: monotonic seconds, injectable for tests.
    """

    def __init__(
        self,
        replicas: int,
        consecutive: int = 5,
        base_ejection_s: float = 5.0,
        max_ejection_s: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._records = [_Record() for _ in range(replicas)]
        self.consecutive = consecutive
        self.base_ejection_s = base_ejection_s
        self.max_ejection_s = max_ejection_s
        self._clock = clock

    def ejected(self, index: int) -> bool:
        return self._records[index].ejected_until > self._clock()

    def record_success(self, index: int) -> None:
        self._records[index].failures = 0

    def record_failure(self, index: int) -> bool:
        """Count one failure; True when it ejected the replica."""
        record = self._records[index]
        record.failures += 1
        if record.failures < self.consecutive or self._last_one_in(index):
            return False
        record.ejections += 1
        record.failures = 0
        length = min(self.max_ejection_s, self.base_ejection_s * record.ejections)
        record.ejected_until = self._clock() + length
        return True

    def _last_one_in(self, index: int) -> bool:
        return all(self.ejected(i) for i in range(len(self._records)) if i != index)
