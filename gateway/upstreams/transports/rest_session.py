"""The REST wire: a pool of keep-alive HTTP/1.1 connections per replica (`http1.py`), and
the one error boundary of its calls.

Not aiohttp's session (used here until issue 15): forwarding one digit to the TF server
at 16 concurrent calls it spent ~3x the CPU per call of `Http1Pool` (see `http1.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.settings import UpstreamSettings
from gateway.upstreams.failures import Target, from_http, from_transport
from gateway.upstreams.transports.http1 import Http1Pool, ProtocolError


@dataclass(frozen=True)
class RestCall:
    """One HTTP request, relative to a replica's base URL."""

    method: str
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] | None = None


class RestWire:
    """Every replica's base URL (`settings.rest`), each with its own connection pool.

    Args:
        settings: `rest` (base URLs), `max_connections` (per replica).
    """

    def __init__(self, settings: UpstreamSettings) -> None:
        self.urls = [url.rstrip("/") for url in settings.rest]
        self.max_connections = settings.max_connections

    def open(self) -> list[Http1Pool]:
        return [Http1Pool(url, self.max_connections) for url in self.urls]

    async def send(
        self, replica: Http1Pool, call: RestCall, timeout: float, target: Target
    ) -> bytes:
        """The body of a 2xx answer; every other outcome raises a `gateway.core.errors` error."""
        try:
            status, payload = await replica.request(
                call.method, call.path, call.body, call.headers, timeout
            )
        except (TimeoutError, OSError, ProtocolError, ValueError) as exc:
            raise from_transport(exc, target) from exc
        if status >= 300:
            raise from_http(status, payload, target)
        return payload

    async def aclose(self, replicas: list[Http1Pool]) -> None:
        for replica in replicas:
            replica.close()
