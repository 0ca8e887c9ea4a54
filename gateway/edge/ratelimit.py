"""Per-key rate limits: a token bucket per API key digest.

A bucket holds up to `burst` tokens and refills at `requests_per_s`; a request takes one
token or is refused with the time until the next one (the `Retry-After` of the 429).
Written here rather than taken from a library because it is a dozen lines whose refusal
must carry that wait, run on an injectable clock, and live inside one event loop without
locks. Buckets are per process: with N workers a key may get up to N times its rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.errors import RateLimited
from gateway.edge.security_settings import RateLimitSettings


@dataclass
class TokenBucket:
    """`capacity` tokens, refilled continuously at `rate` tokens per second."""

    rate: float
    capacity: float
    tokens: float
    updated: float
    limit: RateLimitSettings | None = None
    """The settings it was made from (a changed key file brings new ones)."""

    def take(self, now: float) -> float:
        """Take one token; returns 0.0 on success, else the seconds until one is due."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Buckets by key digest, created on first use from that key's limit.

    Args:
        clock: monotonic seconds; injectable so tests need no sleeps.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key: str, limit: RateLimitSettings, who: str) -> None:
        """Admit one request of `key` or refuse it.

        Raises:
            RateLimited: the key's bucket is empty; `retry_after_s` is the wait for a token.
        """
        if limit.requests_per_s is None:
            return
        bucket = self._bucket(key, limit)
        wait = bucket.take(self._clock())
        if wait > 0:
            raise RateLimited(
                f"rate limit of {limit.requests_per_s:g} requests/s"
                f" (burst {bucket.capacity:g}) exceeded for {who}",
                retry_after_s=wait,
            )

    def _bucket(self, key: str, limit: RateLimitSettings) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is not None and bucket.limit is limit:
            return bucket
        rate = float(limit.requests_per_s or 0.0)
        capacity = float(limit.burst or max(1, math.ceil(rate)))
        if bucket is None or (bucket.rate, bucket.capacity) != (rate, capacity):  # new limit
            bucket = TokenBucket(rate, capacity, capacity, self._clock())
            self._buckets[key] = bucket
        bucket.limit = limit
        return bucket
