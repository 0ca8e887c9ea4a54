"""A bounded closed-loop HTTP load for the fault tests: N clients on a background thread.

Each client sends, waits for the answer (or its own timeout), records one `Shot`, and
sends again, until `stop()` or `max_seconds`. A client told to wait by `Retry-After`
waits, as a well-behaved client does. Every request carries a unique `X-Request-Id`, so
a test can look each one up in the prediction log.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Shot:
    """One request: when it was sent and answered (monotonic s), and how."""

    request_id: str
    sent: float
    answered: float
    status: int  # 0 = no HTTP answer (connection refused, reset, client timeout)
    backend: str | None
    error: str | None = None  # the exception, or the start of a non-200 answer's body

    @property
    def latency(self) -> float:
        return self.answered - self.sent


@dataclass
class Load:
    """Runs `clients` closed-loop clients against `url` until stopped.

    Args:
        url: the prediction URL.
        body: the JSON body every request sends.
        clients: concurrent clients (one connection each).
        headers: per request: a callable giving extra headers (e.g. a routing key).
        timeout_s: a client gives up on one request after this long (status 0).
        max_seconds: the load stops by itself after this long, whatever the test does.
        honour_retry_after: a refused client waits as `Retry-After` says.
        ramp_s: client i starts i/clients x ramp_s after the first (no thundering herd).
    """

    url: str
    body: Any
    clients: int
    headers: Callable[[int], dict[str, str]] = lambda _: {}
    timeout_s: float = 10.0
    max_seconds: float = 60.0
    honour_retry_after: bool = True
    ramp_s: float = 0.0
    shots: list[Shot] = field(default_factory=list)
    in_flight: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> list[Shot]:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 10)
        return list(self.shots)

    def wait_for(self, condition: Callable[[list[Shot]], bool], timeout: float) -> None:
        """Poll the shots recorded so far until `condition` holds (AssertionError after
        `timeout` seconds: the test names what it waited for)."""
        deadline = time.monotonic() + timeout
        while not condition(list(self.shots)):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise AssertionError(f"load condition not reached within {timeout} s")
            self._stop.wait(0.02)

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.clients, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        ends = time.monotonic() + self.max_seconds
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self._client(session, i, ends) for i in range(self.clients)))

    async def _client(self, session: aiohttp.ClientSession, index: int, ends: float) -> None:
        await asyncio.sleep(index / self.clients * self.ramp_s)
        while not self._stop.is_set() and time.monotonic() < ends:
            wait = await self._one(session, index)
            if wait:
                await asyncio.sleep(wait)

    async def _one(self, session: aiohttp.ClientSession, index: int) -> float:
        request_id = uuid.uuid4().hex
        headers = {"X-Request-Id": request_id, **self.headers(index)}
        sent = time.monotonic()
        self.in_flight += 1
        try:
            async with session.post(self.url, json=self.body, headers=headers) as reply:
                content = await reply.read()
                status, backend = reply.status, reply.headers.get("X-Backend")
                retry_after = reply.headers.get("Retry-After")
            error = None if status == 200 else content[:200].decode(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, backend, retry_after, error = 0, None, None, type(exc).__name__
        finally:
            self.in_flight -= 1
        self.shots.append(Shot(request_id, sent, time.monotonic(), status, backend, error))
        if status == 0:
            return 0.05  # refused or reset: do not spin
        if self.honour_retry_after and status == 429 and retry_after:
            return float(retry_after)
        return 0.0


def p99(shots: list[Shot]) -> float:
    """The 99th percentile latency of `shots`, in seconds (nearest rank)."""
    latencies = sorted(shot.latency for shot in shots)
    if not latencies:
        return float("nan")
    return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]


def throughput(shots: list[Shot]) -> float:
    """Answers with status 200 per second over the span they cover."""
    ok = [shot for shot in shots if shot.status == 200]
    if len(ok) < 2:
        return 0.0
    span = max(s.answered for s in ok) - min(s.sent for s in ok)
    return len(ok) / span if span > 0 else 0.0
