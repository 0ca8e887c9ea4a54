"""The REST wire: the pooled aiohttp session of a backend, and the one error boundary of
its calls.

aiohttp rather than httpx: forwarding small bodies at concurrency 16 it moved ~5x the
requests per second on this machine (loadtest/bench_upstream_clients.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from gateway.settings import UpstreamSettings
from gateway.upstreams.failures import Target, from_http, from_transport


@dataclass(frozen=True)
class RestCall:
    """One HTTP request, relative to a replica's base URL."""

    method: str
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] | None = None


class LazySession:
    """One `aiohttp.ClientSession` per upstream, opened on first use in the running loop.

    Args:
        max_connections: pooled connections per replica (`TCPConnector.limit_per_host`).
        replicas: how many replicas share the session (the total connection limit).
        timeout_s: the default per-call deadline; each call passes its own as well.
    """

    def __init__(self, max_connections: int, replicas: int, timeout_s: float) -> None:
        self.max_connections = max_connections
        self.replicas = max(replicas, 1)
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Created here, not in __init__: a session binds to the loop that creates it.
            connector = aiohttp.TCPConnector(
                limit=self.max_connections * self.replicas,
                limit_per_host=self.max_connections,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    target: Target,
    timeout: float,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """The body of a 2xx answer; every other outcome raises a `gateway.errors` error."""
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            payload = await response.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise from_transport(exc, target) from exc
    if response.status >= 300:
        raise from_http(response.status, payload, target)
    return payload


class RestWire:
    """Every replica's base URL (`settings.rest`) over one pooled session.

    Args:
        settings: `rest` (base URLs), `max_connections` (per replica), `timeout_s`.
    """

    def __init__(self, settings: UpstreamSettings) -> None:
        self.urls = [url.rstrip("/") for url in settings.rest]
        self.session = LazySession(settings.max_connections, len(self.urls), settings.timeout_s)

    def open(self) -> list[str]:
        return list(self.urls)

    async def send(self, replica: str, call: RestCall, timeout: float, target: Target) -> bytes:
        url = replica + call.path
        return await fetch(
            self.session.get(), call.method, url, target, timeout, call.body, call.headers
        )

    async def aclose(self, replicas: list[str]) -> None:
        await self.session.aclose()
