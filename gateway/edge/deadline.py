"""Client deadlines, end to end: no request waits past the time its client gave it.

A deadline is an absolute `time.monotonic()` instant carried on `InferRequest.deadline`.
Where it comes from:

- gRPC: the call's own deadline (`grpc-timeout`, read as `context.time_remaining()`).
- REST: Envoy's `x-envoy-expected-rq-timeout-ms` (integer milliseconds; the header Envoy
  and Istio sidecars set on the requests they forward, so a mesh's route timeout reaches
  the gateway unchanged; Envoy router filter docs, "HTTP headers"), or gRPC's own
  `grpc-timeout` header (`<digits><H|M|S|m|u|n>`, "gRPC over HTTP2", PROTOCOL-HTTP2.md)
  for clients that already speak it. With both, the earlier deadline wins.

The router bounds every upstream call by `budget()` (the configured per-backend timeout
or what is left of the client's deadline, whichever is shorter), and a failover happens
only while time is left. A request whose deadline has passed fails with
`DeadlineExceeded` (504 / DEADLINE_EXCEEDED), which no breaker counts against a backend.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from gateway.core.errors import BadRequest, DeadlineExceeded

HEADER_ENVOY_TIMEOUT = "x-envoy-expected-rq-timeout-ms"
HEADER_GRPC_TIMEOUT = "grpc-timeout"
_GRPC_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def from_headers(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The absolute deadline (monotonic seconds) a REST request's headers give, or None.

    Raises:
        BadRequest: a timeout header that is not in its documented form; the message
            names the header.
    """
    now = time.monotonic() if now is None else now
    timeouts = [t for t in (_envoy_timeout(headers), _grpc_timeout(headers)) if t is not None]
    return now + min(timeouts) if timeouts else None


def from_time_remaining(remaining: float | None, now: float | None = None) -> float | None:
    """The absolute deadline of a gRPC call, from `context.time_remaining()` (None when
    the client set no deadline)."""
    if remaining is None:
        return None
    return (time.monotonic() if now is None else now) + remaining


def budget(
    timeout_s: float, deadline: float | None, share: float = 1.0, now: float | None = None
) -> float:
    """Seconds one upstream attempt may take: `timeout_s`, shortened to `share` of the time
    left before the deadline (the router keeps the rest for a failover).

    Raises:
        DeadlineExceeded: the deadline has already passed.
    """
    if deadline is None:
        return timeout_s
    left = deadline - (time.monotonic() if now is None else now)
    if left <= 0:
        raise DeadlineExceeded("the request's deadline passed before an answer could be had")
    return min(timeout_s, left * share)


def _envoy_timeout(headers: Mapping[str, str]) -> float | None:
    value = headers.get(HEADER_ENVOY_TIMEOUT)
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        raise BadRequest(
            f"header {HEADER_ENVOY_TIMEOUT} must be a whole number of milliseconds, got '{value}'"
        )
    return int(value) / 1000.0


def _grpc_timeout(headers: Mapping[str, str]) -> float | None:
    value = headers.get(HEADER_GRPC_TIMEOUT)
    if value is None:
        return None
    match = _GRPC_TIMEOUT.match(value.strip())
    if match is None:
        raise BadRequest(
            f"header {HEADER_GRPC_TIMEOUT} must be 1-8 digits and a unit (H, M, S, m, u, n),"
            f" got '{value}'"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
