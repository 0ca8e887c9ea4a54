"""The REST wire: a pool of keep-alive HTTP/1.1 connections per replica (`http1.py`), and
the one error boundary of its calls.

Not aiohttp's session (used here until issue 15): forwarding one digit to the TF server
at 16 concurrent calls it spent ~3x the CPU per call of `Http1Pool` (see `http1.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.settings import UpstreamSettings
from gateway.upstreams.failures import Target, from_http, from_transport
from gateway.upstreams.transports.http1 import Http1Pool, ProtocolError, tls_context


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
        settings: `rest` (base URLs), `max_connections` (per replica), the answer limits
            (`max_answer_bytes`, `max_answer_header_bytes`) and, for https replicas, the
            TLS files (`tls_ca_file`, `tls_cert_file`, `tls_key_file`).

    Raises:
        OSError, ssl.SSLError: a TLS file cannot be read or is not PEM (at construction,
            so a wrong path stops the gateway at start-up).
    """

    def __init__(self, settings: UpstreamSettings) -> None:
        self.urls = [url.rstrip("/") for url in settings.rest]
        self.settings = settings
        self.max_connections = settings.max_connections
        https = any(url.startswith("https:") for url in self.urls)
        self.tls = (
            tls_context(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)
            if https
            else None
        )

    def open(self) -> list[Http1Pool]:
        s = self.settings
        return [
            Http1Pool(
                url, s.max_connections, s.max_answer_header_bytes, s.max_answer_bytes, self.tls
            )
            for url in self.urls
        ]

    async def send(
        self,
        replica: Http1Pool,
        call: RestCall,
        timeout: float,
        target: Target,
        trace: tuple[tuple[str, str], ...] = (),
    ) -> bytes:
        """The body of a 2xx answer; every other outcome raises a `gateway.core.errors` error.
        `trace` goes out as headers (the REST wire's one writer of the trace context)."""
        try:
            status, payload = await replica.request(
                call.method, call.path, call.body, call.headers, timeout, trace
            )
        except (TimeoutError, OSError, ProtocolError, ValueError) as exc:
            raise from_transport(exc, target) from exc
        if status >= 300:
            raise from_http(status, payload, target)
        return payload

    def describe(self, replica: Http1Pool, call: RestCall) -> tuple[str, dict[str, Any]]:
        """An HTTP client span's name and attributes (OpenTelemetry's HTTP conventions)."""
        return call.method, {
            "http.request.method": call.method,
            "server.address": replica.host or "",
            "server.port": replica.port,
            "url.full": replica.url + call.path,
        }

    async def aclose(self, replicas: list[Http1Pool]) -> None:
        for replica in replicas:
            replica.close()
